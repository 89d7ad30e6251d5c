"""/proc reading that the launcher's supervision and the benchmarks rely on."""

import os
import subprocess
import time

from lipsync_server.launcher import processes


def test_children_states_tree_and_memory():
    alive = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 5
        while processes.children(os.getpid()).get(dead.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        children = processes.children(os.getpid())
        assert children[dead.pid] == "Z" and children[alive.pid] in "SR"  # died, not reaped: a zombie
        assert processes.state_and_parent(alive.pid)[1] == os.getpid()
        assert {os.getpid(), alive.pid} <= set(processes.tree(os.getpid()))
        assert processes.rss_kb(os.getpid()) > 1000 and processes.rss_kb(dead.pid) == 0
    finally:
        alive.kill()
        alive.wait()
        dead.wait()
