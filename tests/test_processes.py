"""The process facts the launcher's supervision and the benchmarks rely on (psutil)."""

import os
import subprocess

import psutil

from lipsync_protocol import waiting
from lipsync_server.launcher import processes
from lipsync_server.launcher.tritonserver import _status


def test_a_dead_unreaped_child_is_a_zombie_and_the_tree_and_its_memory_are_counted():
    alive = subprocess.Popen(["sleep", "30"])
    dead = subprocess.Popen(["true"])
    try:
        child = psutil.Process(dead.pid)
        waiting.until(lambda: _status(child) == psutil.STATUS_ZOMBIE, 5, "the finished child a zombie")
        assert _status(psutil.Process(alive.pid)) in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
        assert {os.getpid(), alive.pid} <= {p.pid for p in processes.tree(os.getpid())}
        alone = psutil.Process().memory_info().rss / 2**20
        assert processes.tree_memory_mb(os.getpid()) > alone > 1
        assert 0 < processes.tree_memory_mb(os.getpid(), proportional=True) < processes.tree_memory_mb(os.getpid())
    finally:
        alive.kill()
        alive.wait()
        dead.wait()
