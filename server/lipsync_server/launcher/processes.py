"""Process facts read from Linux's /proc: who is whose parent, and in what state; and stopping
a process the launcher started.

The launcher uses them to find model processes that died under tritonserver, the benchmarks to
add up the memory of tritonserver and its model processes, the fault tests to find a server's
own stubs.
"""

import signal
import subprocess
from pathlib import Path

PROC = Path("/proc")


def state_and_parent(pid: int) -> tuple[str, int]:
    """(state letter, parent pid) of a process; OSError or ValueError when it is gone."""
    # The command name in parentheses may hold spaces or ')': split after its last ')'.
    state, parent = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[:2]
    return state, int(parent)


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid` and their states ('Z': died, not yet reaped)."""
    found = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                state, parent = state_and_parent(int(entry.name))
            except (OSError, ValueError):
                continue
            if parent == pid:
                found[int(entry.name)] = state
    return found


def tree(pid: int) -> list[int]:
    """`pid` and every process below it."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children(current))
    return found


def rss_kb(pid: int) -> int:
    """Resident memory of one process (0 when it is gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def stop(process: subprocess.Popen | None, graceful: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Asks a running process to stop with `graceful`, then kills it if it has not in time."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(graceful)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
