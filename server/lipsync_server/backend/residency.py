"""Which avatars are resident (loaded in Triton) and which are only in the repository.

The repository may hold any number of avatars; the server keeps a bounded set loaded. A request
for an avatar that is not loaded loads it (Triton's explicit model control, from inside the
face_generator model) and waits for it up to `load_wait_s`; past that it is refused with
UNAVAILABLE and a message saying when to retry (lipsync_protocol.messages.loading), which the client
acts on; no request waits past its own deadline either. Before a load, the least recently used
avatars are unloaded while the resident count is at `max_resident` or the available memory (the
container's, where a cgroup limit is set) is below `min_available_mb`, or, where the avatars run
on a GPU, the GPU's available memory is below `min_available_gpu_mb`; an avatar with a request
in flight, one being loaded and a pinned one are never unloaded. Pinned avatars, which the
server loads at start, count against `max_resident` from the start.

A load that fails for a passing reason (memory, a model process that could not start) is
refused as UNAVAILABLE with a time to retry; any other failure (a broken version) is the
avatar's: refused as INVALID_ARG, and not tried again until the avatar's files change.

All state lives on the face_generator's event loop (one instance, one thread), so choosing a
victim and marking it is atomic with respect to requests; only Triton's load and unload calls,
which block, run in a worker thread.
"""

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lipsync_protocol import avatar_names, messages

from .memory import GpuMemory, Memory, auto_max_resident

# Time to wait for an unloaded avatar's model processes to exit (and free their memory).
UNLOAD_WAIT_S = 30.0
# A load that failed for a passing reason is worth retrying after this long.
RETRY_FAILED_LOAD_S = 30.0
# What Triton and the python backend say when a load failed for want of memory or processes.
PASSING_LOAD_FAILURES = (
    "out of memory",
    "bad_alloc",
    "cannot allocate memory",
    "resource temporarily unavailable",
    "failed to start stub",
    "stub process",
    "shared memory",
)


@dataclass(frozen=True)
class Budget:
    max_resident: int
    min_available_mb: int
    pinned: frozenset[str]
    load_wait_s: float
    min_available_gpu_mb: int = 0
    gpu: GpuMemory | None = None  # the GPU the avatars' engines are on (GPU profile)

    def memory_short(self) -> bool:
        """Less memory available than a load needs: the host's, or the GPU's."""
        if Memory().available_mb() < self.min_available_mb:
            return True
        return self.gpu is not None and self.gpu.available_mb() < self.min_available_gpu_mb


class Triton:
    """The model-control calls of the python backend (triton_python_backend_utils), by name."""

    def __init__(self, pb_utils):
        self.pb_utils = pb_utils

    def is_ready(self, model: str, version: int = 0) -> bool:
        return self.pb_utils.is_model_ready(model, str(version) if version > 0 else "")

    def load(self, model: str) -> None:
        self.pb_utils.load_model(model)

    def unload(self, model: str) -> None:
        self.pb_utils.unload_model(model)


class Events:
    """What residency tells the metrics (backend/metrics.py): nothing, by default."""

    def loaded(self, seconds: float) -> None: ...

    def load_failed(self) -> None: ...

    def evicted(self) -> None: ...

    def resident(self, count: int) -> None: ...


class Residency:
    def __init__(
        self,
        repository: Path,
        budget: Budget,
        triton: Triton,
        log: Callable[[str], None],
        prepare: Callable[[str], None] | None = None,
        events: Events | None = None,
    ):
        self.repository = Path(repository)
        self.budget, self.triton, self.log = budget, triton, log
        self.prepare = prepare  # run before a load (the GPU profile: build missing plans)
        self.events = events or Events()
        self.resident: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self.in_flight: Counter[str] = Counter()
        self.loading: dict[str, asyncio.Future] = {}
        self.unloading: dict[str, asyncio.Future] = {}
        self.broken: dict[str, tuple[tuple, str]] = {}  # avatar -> (its files then, why its load failed)
        self._one_load_at_a_time = asyncio.Lock()
        for avatar in sorted(budget.pinned):  # loaded by the server at start
            if (self.repository / avatar_names.model_name(avatar) / "config.pbtxt").is_file():
                self.resident[avatar] = None
        self.events.resident(len(self.resident))

    def begin(self, avatar: str) -> None:
        """A request for `avatar` is in flight until end(): it may not be unloaded."""
        self.in_flight[avatar] += 1
        if avatar in self.resident:
            self._mark_resident(avatar)

    def end(self, avatar: str) -> None:
        self.in_flight[avatar] -= 1
        if not self.in_flight[avatar]:
            del self.in_flight[avatar]

    async def ensure(self, avatar: str, version: int, left_s: float = float("inf")) -> str | None:
        """None once `avatar` can serve; else why not, as UNAVAILABLE's message (still loading,
        or a load that failed for a passing reason) or raised LookupError / RuntimeError (not in
        the repository / broken). Waits at most load_wait_s, and at most `left_s`, the time the
        request has left."""
        model = avatar_names.model_name(avatar)
        started = time.monotonic()
        wait_s = max(0.0, min(self.budget.load_wait_s, left_s))
        if avatar in self.unloading:  # evicted a moment ago: load it again once it is gone
            try:
                await asyncio.wait_for(asyncio.shield(self.unloading[avatar]), wait_s)
            except asyncio.TimeoutError:
                return messages.loading(avatar, max(1.0, min(5.0, wait_s)))
        if avatar not in self.loading:
            if self.triton.is_ready(model, version) or (avatar in self.resident and self.triton.is_ready(model)):
                self._mark_resident(avatar)
                return None  # a missing version is the UNet call's error to report
            folder = self.repository / model
            if not (folder / "config.pbtxt").is_file():
                raise LookupError(f"AVATAR: no avatar {messages.quoted(avatar)} on this server")
            if avatar in self.broken and self.broken[avatar][0] == files_of(folder):
                raise RuntimeError(self.broken[avatar][1])  # unchanged since it failed: no new load
            self.broken.pop(avatar, None)
            self.loading[avatar] = asyncio.ensure_future(self._load(avatar, model))
        try:
            left = max(0.0, wait_s - (time.monotonic() - started))
            await asyncio.wait_for(asyncio.shield(self.loading[avatar]), left)
        except asyncio.TimeoutError:
            waited = time.monotonic() - started
            return messages.loading(avatar, max(1.0, min(5.0, waited)))
        except PassingLoadFailure as failure:
            return str(failure)
        return None

    def _mark_resident(self, avatar: str) -> None:
        """Resident and the most recently used."""
        self.resident[avatar] = None
        self.resident.move_to_end(avatar)
        self.events.resident(len(self.resident))

    async def _load(self, avatar: str, model: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._one_load_at_a_time:
                unloads = [asyncio.ensure_future(self._unload(victim)) for victim in self._victims()]
                if self.budget.memory_short():  # free the memory first
                    await asyncio.gather(*unloads)
                started = time.monotonic()
                files = files_of(self.repository / model)
                try:
                    if self.prepare:
                        await loop.run_in_executor(None, self.prepare, model)
                    await loop.run_in_executor(None, self.triton.load, model)
                except Exception as error:
                    self.events.load_failed()
                    raise self._failed(avatar, files, str(error)) from None
                self._mark_resident(avatar)
                seconds = time.monotonic() - started
                self.events.loaded(seconds)
                self.log(f"loaded avatar {avatar!r} on demand in {seconds:.1f} s")
        finally:
            del self.loading[avatar]

    def _failed(self, avatar: str, files: tuple, error: str) -> Exception:
        """What a failed load of `avatar` is: passing (retry later) or the avatar's own."""
        if any(cause in error.lower() for cause in PASSING_LOAD_FAILURES):
            self.log(f"avatar {avatar!r} could not be loaded now: {error}")
            return PassingLoadFailure(messages.load_failed(avatar, RETRY_FAILED_LOAD_S, error))
        message = f"AVATAR: avatar {messages.quoted(avatar)} cannot be loaded: {messages.quoted(error)}"
        folder = self.repository / avatar_names.model_name(avatar)
        failed_plans = sorted(p.parent.name for p in folder.glob("[0-9]*/model.plan.failed.json"))
        if failed_plans and "failed to build" not in error:  # the GPU profile: tensorrt_plans.py left it
            message += f" (the TensorRT plan of version {', '.join(failed_plans)} failed to build: model.plan.log)"
        self.broken[avatar] = (files, message)
        return RuntimeError(message)

    def _victims(self) -> list[str]:
        """The least recently used avatars that must go before one more loads, chosen and
        marked at once: enough to stay within the count, or one when memory is short."""
        needed = len(self.resident) + 1 - self.budget.max_resident
        if needed <= 0 and self.budget.memory_short():
            needed = 1
        evictable = [
            avatar
            for avatar in self.resident
            if avatar not in self.budget.pinned and not self.in_flight[avatar] and avatar not in self.loading
        ]
        victims = evictable[: max(0, needed)]
        for avatar in victims:
            del self.resident[avatar]
            self.unloading[avatar] = asyncio.get_running_loop().create_future()
            self.events.evicted()
        self.events.resident(len(self.resident))
        return victims

    async def _unload(self, avatar: str) -> None:
        model = avatar_names.model_name(avatar)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.triton.unload, model)
            deadline = time.monotonic() + UNLOAD_WAIT_S
            while time.monotonic() < deadline and await loop.run_in_executor(None, self.triton.is_ready, model):
                await asyncio.sleep(0.1)
            self.log(f"unloaded avatar {avatar!r} (least recently used)")
        finally:
            self.unloading.pop(avatar).set_result(None)


class PassingLoadFailure(Exception):
    """A load failed for want of something that may be there later: its message says when."""


def files_of(folder: Path) -> tuple:
    """What an avatar's folder holds, two levels down (versions' files, media's files): a
    broken avatar is tried again once this changes."""
    found = []
    for path in sorted([folder, *folder.glob("*"), *folder.glob("*/*")]):
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)


def budget(parameter: Callable[[str], str], gpu: GpuMemory | None = None) -> Budget:
    """The face_generator config's residency parameters (config.pbtxt says what each means);
    `gpu`: the GPU the avatars run on, whose memory bounds them too."""
    count = parameter("max_resident_avatars")
    if count == "auto":
        resident = auto_max_resident(int(parameter("resident_avatar_mb")))
        if gpu is not None:
            resident = min(resident, auto_max_resident(int(parameter("resident_avatar_gpu_mb")), memory=gpu))
    else:
        resident = max(1, int(count))
    return Budget(
        max_resident=resident,
        min_available_mb=int(parameter("min_available_memory_mb")),
        pinned=avatar_names.name_list(parameter("pinned_avatars")),
        load_wait_s=float(parameter("load_wait_s")),
        min_available_gpu_mb=int(parameter("min_available_gpu_memory_mb")),
        gpu=gpu,
    )
