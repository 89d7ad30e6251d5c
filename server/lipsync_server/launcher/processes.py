"""Processes the launcher started: whether one answers yet, the memory of one with everything below
it (psutil), and stopping one gracefully."""

import signal
import subprocess
import urllib.request

import psutil


def tree(pid: int) -> list[psutil.Process]:
    """`pid` and every process below it (tritonserver and its python-backend stubs)."""
    top = psutil.Process(pid)
    return [top, *top.children(recursive=True)]


def tree_memory_mb(pid: int, proportional: bool = False) -> float:
    """Resident memory of `pid` and every process below it; `proportional`: PSS, shared pages
    divided among the processes that share them (slower to read). Processes that end meanwhile
    count for nothing."""
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_full_info().pss if proportional else process.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def answering(process: subprocess.Popen | None, url: str, timeout: float = 1.0) -> bool:
    """Whether `url`, served by `process`, answers 200 now; RuntimeError once the process has exited."""
    if process is not None and process.poll() is not None:
        raise RuntimeError(f"the process serving {url} exited with code {process.returncode}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


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
