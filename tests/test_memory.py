"""The memory a server may use (lipsync_server/backend/memory.py), read from fake /proc and
/sys/fs/cgroup trees: the host's, or the container's where a cgroup limit is set."""

from pathlib import Path

from lipsync_server.backend.memory import GpuMemory, Memory, auto_max_resident, gpu_memory

GB = 1024**3
MEMINFO = "MemTotal:       65536000 kB\nMemFree:        1000000 kB\nMemAvailable:   48000000 kB\n"


def tree(root: Path, cgroup: str, files: dict[str, str]) -> Memory:
    (root / "proc" / "self").mkdir(parents=True)
    (root / "proc" / "meminfo").write_text(MEMINFO)
    (root / "proc" / "self" / "cgroup").write_text(cgroup)
    for name, text in files.items():
        (root / "sys/fs/cgroup" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "sys/fs/cgroup" / name).write_text(text)
    return Memory(root)


def test_without_a_limit_it_is_the_machines(tmp_path):
    memory = tree(tmp_path, "0::/\n", {"memory.max": "max\n", "memory.current": "123\n"})
    assert (memory.total_mb(), memory.available_mb()) == (64000, 46875)


def test_a_cgroup_v2_limit_with_its_working_set(tmp_path):
    memory = tree(
        tmp_path,
        "0::/kubepods/pod1/ctr\n",
        {
            "kubepods/pod1/ctr/memory.max": f"{8 * GB}\n",
            "kubepods/pod1/ctr/memory.current": f"{3 * GB}\n",
            "kubepods/pod1/ctr/memory.stat": f"anon {2 * GB}\ninactive_file {1 * GB}\n",
        },
    )
    assert memory.total_mb() == 8192
    assert memory.available_mb() == 6144  # 8 GB less 3 GB used, of which 1 GB reclaimable cache


def test_a_parents_smaller_limit_counts(tmp_path):
    memory = tree(
        tmp_path,
        "0::/pod/ctr\n",
        {
            "pod/memory.max": f"{4 * GB}\n",
            "pod/memory.current": f"{1 * GB}\n",
            "pod/ctr/memory.max": "max\n",
            "pod/ctr/memory.current": f"{1 * GB}\n",
        },
    )
    assert (memory.total_mb(), memory.available_mb()) == (4096, 3072)


def test_a_cgroup_v1_limit_and_v1s_unlimited(tmp_path):
    files = {
        "memory/docker/abc/memory.limit_in_bytes": f"{2 * GB}\n",
        "memory/docker/abc/memory.usage_in_bytes": f"{GB // 2}\n",
        "memory/docker/abc/memory.stat": "total_inactive_file 0\n",
        "memory/memory.limit_in_bytes": "9223372036854771712\n",
        "memory/memory.usage_in_bytes": f"{40 * GB}\n",
    }
    memory = tree(tmp_path, "4:memory:/docker/abc\n1:cpu:/\n", files)
    assert (memory.total_mb(), memory.available_mb()) == (2048, 1536)


def test_a_container_that_sees_its_own_cgroup_as_the_root(tmp_path):
    memory = tree(tmp_path, "0::/\n", {"memory.max": f"{6 * GB}\n", "memory.current": f"{1 * GB}\n"})
    assert (memory.total_mb(), memory.available_mb()) == (6144, 5120)


def test_the_catalogs_budget_follows_the_containers_limit(tmp_path):
    memory = tree(tmp_path, "0::/\n", {"memory.max": f"{8 * GB}\n", "memory.current": "0\n"})
    assert auto_max_resident(500, memory=memory) == 8  # half of 8 GB over 500 MB, not of the host's 64 GB


class NVML:
    """NVML's three calls that GpuMemory makes, over one GPU's numbers."""

    def __init__(self, total_mb: int, free_mb: int):
        self.info = type("Info", (), {"total": total_mb * 1024**2, "free": free_mb * 1024**2})()

    def nvmlDeviceGetHandleByIndex(self, index: int):
        assert index == 0  # the pod's GPU
        return "gpu0"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return self.info


def test_the_gpu_profile_counts_the_gpus_memory_too():
    gpu = GpuMemory(NVML(total_mb=81920, free_mb=3000))
    assert (gpu.total_mb(), gpu.available_mb()) == (81920, 3000)
    # 80 GB at 1700 MB an avatar: half of it holds 24, whatever the host's memory holds.
    assert auto_max_resident(1700, memory=gpu) == 24


def test_without_a_gpu_there_is_no_gpu_budget():
    assert gpu_memory() is None  # this machine: no NVIDIA driver (or no nvidia-ml-py)
