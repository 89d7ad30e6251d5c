"""Which avatars are resident (loaded in Triton) and which are only in the repository.

The repository may hold any number of avatars; the server keeps a bounded set loaded. A request
for an avatar that is not loaded loads it (Triton's explicit model control, from inside the
face_generator model) and waits for it up to `load_wait_s`; past that it is refused with
UNAVAILABLE and a message saying when to retry (lipsync.messages.loading), which the client
acts on. Before a load, the least recently used avatars are unloaded while the resident count is
at `max_resident` or the machine's available memory is below `min_available_mb`; an avatar with
a request in flight, one being loaded and a pinned one are never unloaded.

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

from lipsync import avatar_names, messages

from . import stub
from .memory import Memory, auto_max_resident

# Time to wait for an unloaded avatar's model processes to exit (and free their memory).
UNLOAD_WAIT_S = 30.0


@dataclass(frozen=True)
class Budget:
    max_resident: int
    min_available_mb: int
    pinned: frozenset[str]
    load_wait_s: float


def available_mb() -> int:
    return Memory().available_mb()


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


class Residency:
    def __init__(self, repository: Path, budget: Budget, triton: Triton, log: Callable[[str], None]):
        self.repository = Path(repository)
        self.budget, self.triton, self.log = budget, triton, log
        self.resident: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self.in_flight: Counter[str] = Counter()
        self.loading: dict[str, asyncio.Future] = {}
        self.unloading: dict[str, asyncio.Future] = {}
        self._one_load_at_a_time = asyncio.Lock()

    def begin(self, avatar: str) -> None:
        """A request for `avatar` is in flight until end(): it may not be unloaded."""
        self.in_flight[avatar] += 1
        if avatar in self.resident:
            self._mark_resident(avatar)

    def end(self, avatar: str) -> None:
        self.in_flight[avatar] -= 1
        if not self.in_flight[avatar]:
            del self.in_flight[avatar]

    async def ensure(self, avatar: str, version: int) -> str | None:
        """None once `avatar` can serve; else why not, as UNAVAILABLE's message (still loading)
        or raised LookupError / RuntimeError (not in the repository / failed to load)."""
        model = avatar_names.model_name(avatar)
        if avatar in self.unloading:  # evicted a moment ago: load it again once it is gone
            await asyncio.shield(self.unloading[avatar])
        if avatar not in self.loading:
            if self.triton.is_ready(model, version) or (avatar in self.resident and self.triton.is_ready(model)):
                self._mark_resident(avatar)
                return None  # a missing version is the UNet call's error to report
            if not (self.repository / model / "config.pbtxt").is_file():
                raise LookupError(f"AVATAR: no avatar {messages.quoted(avatar)} on this server")
            self.loading[avatar] = asyncio.ensure_future(self._load(avatar, model))
        started = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(self.loading[avatar]), self.budget.load_wait_s)
        except asyncio.TimeoutError:
            waited = time.monotonic() - started
            return messages.loading(avatar, max(1.0, min(5.0, waited)))
        return None

    def _mark_resident(self, avatar: str) -> None:
        """Resident and the most recently used."""
        self.resident[avatar] = None
        self.resident.move_to_end(avatar)

    async def _load(self, avatar: str, model: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with self._one_load_at_a_time:
                unloads = [asyncio.ensure_future(self._unload(victim)) for victim in self._victims()]
                if available_mb() < self.budget.min_available_mb:  # free the memory first
                    await asyncio.gather(*unloads)
                started = time.monotonic()
                try:
                    await loop.run_in_executor(None, self.triton.load, model)
                except Exception as error:
                    raise RuntimeError(f"avatar {messages.quoted(avatar)} cannot be loaded: {error}") from None
                self._mark_resident(avatar)
                self.log(f"loaded avatar {avatar!r} on demand in {time.monotonic() - started:.1f} s")
        finally:
            del self.loading[avatar]

    def _victims(self) -> list[str]:
        """The least recently used avatars that must go before one more loads, chosen and
        marked at once: enough to stay within the count, or one when memory is short."""
        needed = len(self.resident) + 1 - self.budget.max_resident
        if needed <= 0 and available_mb() < self.budget.min_available_mb:
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


def budget(config: dict) -> Budget:
    """The face_generator config's residency parameters (config.pbtxt says what each means)."""
    per_avatar_mb = int(stub.parameter(config, "resident_avatar_mb"))
    count = stub.parameter(config, "max_resident_avatars")
    return Budget(
        max_resident=auto_max_resident(per_avatar_mb) if count == "auto" else max(1, int(count)),
        min_available_mb=int(stub.parameter(config, "min_available_memory_mb")),
        pinned=avatar_names.name_list(stub.parameter(config, "pinned_avatars")),
        load_wait_s=float(stub.parameter(config, "load_wait_s")),
    )
