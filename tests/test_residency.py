"""The catalog's resident set (lipsync_server/backend/residency.py) against a Triton stand-in
that records the model-control calls: the budget counts pinned avatars from the start, a broken
avatar is not loaded again until its files change, a load that failed for want of memory is a
passing refusal, and no wait outlasts the request's own deadline. The real server's behaviour
is tests/test_catalog.py's."""

import asyncio
import threading
from pathlib import Path

import pytest

from lipsync_protocol import messages
from lipsync_server.backend.residency import Budget, Residency


class Models:
    """Triton's model control, as the python backend offers it, over a set of loaded names."""

    def __init__(self, loaded=(), failure: str | None = None):
        self.loaded, self.failure = set(loaded), failure
        self.loads: list[str] = []
        self.unload_may_finish = threading.Event()
        self.unload_may_finish.set()

    def is_ready(self, model: str, version: int = 0) -> bool:
        return model in self.loaded

    def load(self, model: str) -> None:
        self.loads.append(model)
        if self.failure:
            raise RuntimeError(self.failure)
        self.loaded.add(model)

    def unload(self, model: str) -> None:
        self.unload_may_finish.wait(10)
        self.loaded.discard(model)


def repository(tmp_path: Path, *avatars: str) -> Path:
    for name in avatars:
        (tmp_path / f"avatar_{name}" / "1").mkdir(parents=True)
        (tmp_path / f"avatar_{name}" / "config.pbtxt").write_text("")
    return tmp_path


def residency(tmp_path, models, max_resident=2, pinned=("demo",)) -> Residency:
    budget = Budget(max_resident=max_resident, min_available_mb=0, pinned=frozenset(pinned), load_wait_s=5.0)
    return Residency(repository(tmp_path, "demo", "a", "b"), budget, models, lambda line: None)


async def unloads_done(resident: Residency) -> None:
    """Waits for the unloads a load started beside it (they run on while the load goes on)."""
    await asyncio.gather(*resident.unloading.values())


def test_pinned_avatars_count_against_the_budget_from_the_start(tmp_path):
    models = Models(loaded={"avatar_demo"})

    async def run():
        resident = residency(tmp_path, models)
        assert await resident.ensure("a", 0) is None
        assert await resident.ensure("b", 0) is None  # demo + a is the budget of 2: a goes
        await unloads_done(resident)
        return resident

    resident = asyncio.run(run())
    assert models.loaded == {"avatar_demo", "avatar_b"}
    assert list(resident.resident) == ["demo", "b"]


def test_a_broken_avatar_is_not_loaded_again_until_its_files_change(tmp_path):
    models = Models(failure="failed to load 'avatar_a' version 1: avatar 'a': media unusable: rects.json is missing")

    async def run():
        resident = residency(tmp_path, models)
        for _ in range(3):
            with pytest.raises(RuntimeError, match="AVATAR: avatar 'a' cannot be loaded: .*media unusable"):
                await resident.ensure("a", 0)
        assert models.loads == ["avatar_a"]
        (tmp_path / "avatar_a" / "1" / "model.onnx").write_bytes(b"a new export")  # the user fixes it
        models.failure = None
        assert await resident.ensure("a", 0) is None

    asyncio.run(run())
    assert models.loads == ["avatar_a", "avatar_a"]


def test_a_load_that_failed_for_want_of_memory_is_retried_later(tmp_path):
    models = Models(failure="failed to load 'avatar_a': std::bad_alloc")

    async def run():
        resident = residency(tmp_path, models)
        refusal = await resident.ensure("a", 0)
        assert "could not be loaded now" in refusal and messages.retry_after(refusal) == 30
        models.failure = None
        assert await resident.ensure("a", 0) is None  # tried again at once: not the avatar's fault

    asyncio.run(run())


def test_waiting_for_an_unload_ends_at_the_requests_deadline(tmp_path):
    models = Models(loaded={"avatar_demo", "avatar_a"})

    async def run():
        resident = residency(tmp_path, models)
        assert await resident.ensure("a", 0) is None
        models.unload_may_finish.clear()  # the unload of a hangs (its processes are slow to exit)
        loading_b = asyncio.ensure_future(resident.ensure("b", 0))  # makes room: a is unloading
        while "a" not in resident.unloading:
            await asyncio.sleep(0.01)
        refusal = await resident.ensure("a", 0, left_s=0.1)  # a again, with 0.1 s left
        assert messages.LOADING in refusal
        assert not resident.unloading["a"].done()  # answered before the unload ended
        models.unload_may_finish.set()
        assert await loading_b is None

    asyncio.run(run())


class GPU:
    """A GPU whose available memory the test sets."""

    def __init__(self, available_mb: int):
        self.available = available_mb

    def total_mb(self) -> int:
        return 81920

    def available_mb(self) -> int:
        return self.available


def test_on_a_gpu_short_of_memory_the_least_recently_used_avatar_goes_first(tmp_path):
    models = Models(loaded={"avatar_demo"})
    gpu = GPU(available_mb=10_000)
    budget = Budget(
        max_resident=10,
        min_available_mb=0,
        pinned=frozenset({"demo"}),
        load_wait_s=5.0,
        min_available_gpu_mb=2048,
        gpu=gpu,
    )

    async def run():
        resident = Residency(repository(tmp_path, "demo", "a", "b"), budget, models, lambda line: None)
        assert await resident.ensure("a", 0) is None  # room on the GPU: nothing goes
        gpu.available = 1000  # a's engine took the GPU's memory
        assert await resident.ensure("b", 0) is None  # well within the count, but a goes first
        await unloads_done(resident)
        return resident

    resident = asyncio.run(run())
    assert models.loaded == {"avatar_demo", "avatar_b"}
    assert list(resident.resident) == ["demo", "b"]


def test_the_gpus_memory_bounds_the_automatic_count():
    from lipsync_server.backend.residency import budget

    parameters = {
        "max_resident_avatars": "auto",
        "resident_avatar_mb": "1",
        "resident_avatar_gpu_mb": "1700",
        "min_available_memory_mb": "0",
        "min_available_gpu_memory_mb": "2048",
        "pinned_avatars": "demo",
        "load_wait_s": "4",
    }
    assert budget(parameters.__getitem__, GPU(available_mb=80000)).max_resident == 24  # half of 80 GB / 1.7 GB
    assert budget(parameters.__getitem__, None).max_resident > 24  # the CPU profile: the host's memory only


def test_an_avatar_whose_plan_failed_says_so(tmp_path):
    models = Models(failure="failed to load 'avatar_a' version 2: unable to find model.plan")
    resident = residency(tmp_path, models)
    (tmp_path / "avatar_a" / "2").mkdir()
    (tmp_path / "avatar_a" / "2" / "model.plan.failed.json").write_text("{}")
    with pytest.raises(RuntimeError, match=r"the TensorRT plan of version 2 failed to build: model.plan.log"):
        asyncio.run(resident.ensure("a", 0))


def test_a_load_on_demand_prepares_the_avatar_first_and_a_failed_preparation_is_the_avatars(tmp_path):
    # The GPU profile's preparation builds the version's missing TensorRT plans (tensorrt_plans.on_demand).
    models, prepared = Models(), []

    def prepare(model: str) -> None:
        prepared.append(model)
        if model == "avatar_b":
            raise RuntimeError("the TensorRT plan of version 1 failed to build: model.plan.log")

    budget = Budget(max_resident=5, min_available_mb=0, pinned=frozenset(), load_wait_s=5.0)
    resident = Residency(repository(tmp_path, "demo", "a", "b"), budget, models, lambda line: None, prepare)

    async def run():
        assert await resident.ensure("a", 0) is None
        with pytest.raises(RuntimeError, match="AVATAR: avatar 'b' cannot be loaded: .*plan of version 1 failed"):
            await resident.ensure("b", 0)

    asyncio.run(run())
    assert prepared == ["avatar_a", "avatar_b"] and models.loads == ["avatar_a"]  # b's load never tried
