"""How much memory this server may use: the machine's, or its container's where a cgroup limit
is set (cgroup v2 memory.max, v1 memory.limit_in_bytes, on this process's cgroup and those
above it), whichever is smaller. In a container /proc/meminfo shows the host's memory, and a
budget made from it would have the kernel's OOM killer, not the catalog, choose what goes.

Available memory in a cgroup is its limit less its working set (usage less inactive file
pages, which the kernel reclaims before it kills): what the kubelet evicts by.

On the GPU profile the avatars' TensorRT engines live in the GPU's memory, which NVML reports
(nvidia-ml-py, in the image): GPU 0 is the pod's, a container seeing only the GPUs it was given.
"""

from pathlib import Path
from typing import Protocol

MB = 1024 * 1024
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value.
V1_UNLIMITED = 2**60


class Pool(Protocol):
    def total_mb(self) -> int: ...

    def available_mb(self) -> int: ...


class Memory:
    def __init__(self, root: Path = Path("/")):
        self.root = root  # a fake tree in tests

    def total_mb(self) -> int:
        limits = [limit for limit, _ in self._cgroups()]
        return min([self._meminfo_mb("MemTotal"), *(limit // MB for limit in limits)])

    def available_mb(self) -> int:
        free = [(limit - used) // MB for limit, used in self._cgroups()]
        return max(0, min([self._meminfo_mb("MemAvailable"), *free]))

    def _meminfo_mb(self, field: str) -> int:
        for line in (self.root / "proc/meminfo").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
        raise OSError(f"/proc/meminfo has no {field}")

    def _cgroups(self) -> list[tuple[int, int]]:
        """(limit, working set) in bytes of every limited cgroup this process is in or under."""
        try:
            lines = (self.root / "proc/self/cgroup").read_text().splitlines()
        except OSError:
            return []
        found = []
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # v2: one hierarchy
                found += self._limits(
                    self.root / "sys/fs/cgroup", path, "memory.max", "memory.current", "inactive_file"
                )
            elif "memory" in controllers.split(","):
                base = self.root / "sys/fs/cgroup/memory"
                found += self._limits(
                    base, path, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"
                )
        return found

    @staticmethod
    def _limits(base: Path, path: str, limit_file: str, usage_file: str, inactive: str) -> list[tuple[int, int]]:
        found = []
        folder = base / path.strip("/")
        while True:  # this cgroup and each above it, up to the mount (a container sees its own as /)
            try:
                limit = (folder / limit_file).read_text().strip()
                if limit != "max" and int(limit) < V1_UNLIMITED:
                    used = int((folder / usage_file).read_text())
                    found.append((int(limit), used - _stat(folder / "memory.stat", inactive)))
            except (OSError, ValueError):
                pass
            if folder == base:
                return found
            folder = folder.parent


class GpuMemory:
    """One GPU's memory, through NVML (pynvml, or a stand-in with its three calls in tests)."""

    def __init__(self, nvml, index: int = 0):
        self.nvml = nvml
        self.handle = nvml.nvmlDeviceGetHandleByIndex(index)

    def total_mb(self) -> int:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).total // MB

    def available_mb(self) -> int:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).free // MB


def gpu_memory() -> GpuMemory | None:
    """GPU 0's memory; None without a GPU, its driver or nvidia-ml-py (the CPU profile)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return GpuMemory(pynvml) if pynvml.nvmlDeviceGetCount() > 0 else None
    except Exception:  # ImportError, or pynvml.NVMLError for no driver / no device
        return None


def auto_max_resident(resident_avatar_mb: int, memory_share: float = 0.5, memory: Pool | None = None) -> int:
    """The catalog's `auto` count: a share of the memory this server may use (its container's
    limit, where one is set) divided by what a resident avatar costs."""
    return max(1, int(memory_share * (memory or Memory()).total_mb() / resident_avatar_mb))


def _stat(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, value = line.split()
            if name == field:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0
