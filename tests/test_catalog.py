"""A catalog larger than what the server keeps resident: 200 avatars in the repository (the demo's
trained version, linked, not copied), at most 3 resident, the demo pinned. Avatars load on their
first request, the least recently used one makes room, a request that would wait too long for a
load is refused with UNAVAILABLE and a retry time, and the client retries that on its own."""

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync.transport import infer_inputs
from lipsync_protocol import framing, waiting
from lipsync_protocol.ensemble import ENSEMBLE
from lipsync_server.demo.catalog import link_avatar
from lipsync_server.launcher.tritonserver import TritonServer
from lipsync_server.model_configs import set_parameters

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
CATALOG = [f"c{i:03d}" for i in range(200)]
AUDIO = (0.1 * np.sin(np.arange(8000) / 9)).astype(np.float32)  # 0.5 s: 12 frames
FRAMES = framing.frame_count(len(AUDIO))


def catalog_repository(folder: Path) -> Path:
    """The repository with 200 more avatars: the demo's version 2 and media, hard-linked."""
    repository = folder / "model_repository"
    shutil.copytree(ROOT / "model_repository", repository, ignore=shutil.ignore_patterns("__pycache__"))
    for name in CATALOG:
        link_avatar(repository, "demo", name, versions=[2])
    config = repository / "face_generator" / "config.pbtxt"
    # A request does not wait for its avatar's load: it is refused at once with when to retry,
    # whatever a load takes on this machine (the client retries).
    set_parameters(config, max_resident_avatars="3", load_wait_s="0")
    return repository


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    log = ROOT / "out" / "catalog-server.log"
    log.unlink(missing_ok=True)
    with TritonServer.on_free_ports(catalog_repository(tmp_path_factory.mktemp("catalog")), log=log) as server:
        yield server


def client_of(server: TritonServer, **options) -> LipsyncClient:
    return LipsyncClient(f"127.0.0.1:{server.grpc_port}", **options)


def resident(client: LipsyncClient) -> set[str]:
    return {a.name for a in client.avatars() if a.ready}


def test_only_the_pipeline_and_pinned_avatars_load_at_start(catalog):
    client = client_of(catalog)
    listed = {a.name for a in client.avatars()}
    assert set(CATALOG) <= listed
    assert resident(client) == {"demo"}


def test_any_avatar_of_the_catalog_renders_on_request(catalog):
    client = client_of(catalog)
    assert len(client.render(AUDIO, 16000, "c137")) == FRAMES
    assert "c137" in resident(client)
    # The same weights and media as the demo's version 2: the same frames.
    assert client.render(AUDIO, 16000, "c137") == client.render(AUDIO, 16000, "demo", version=2)


def test_a_request_is_refused_while_its_avatar_loads_and_the_client_retries(catalog):
    # A bare Triton client: the refusal as the server sends it.
    raw = grpcclient.InferenceServerClient(f"127.0.0.1:{catalog.grpc_port}")
    tensors = [
        ("AUDIO", AUDIO.reshape(1, -1), "FP32"),
        ("SAMPLE_RATE", np.array([[16000]], np.int32), "INT32"),
        ("AVATAR", np.array([[b"c042"]], np.object_), "BYTES"),
        ("START_FRAME", np.array([[0]], np.int64), "INT64"),
    ]
    before = refused(catalog, "avatar_loading")
    with pytest.raises(InferenceServerException) as error:
        raw.infer(ENSEMBLE, infer_inputs(grpcclient, tensors))
    assert "StatusCode.UNAVAILABLE" in str(error.value.status())
    assert re.search(r"avatar 'c042' is loading .*retry in \d+ s", error.value.message())
    # Without retries, the client passes the refusal on; with them (the default) it renders.
    with pytest.raises(InferenceServerException):
        client_of(catalog, cold_start_wait_s=0).render(AUDIO, 16000, "c043")
    assert refused(catalog, "avatar_loading") == before + 2
    assert len(client_of(catalog).render(AUDIO, 16000, "c044")) == FRAMES


def refused(server: TritonServer, reason: str) -> float:
    return server.metrics().total("lipsync_requests_refused_total", reason=reason)


def test_the_least_recently_used_avatar_makes_room_and_the_pinned_one_stays(catalog):
    client = client_of(catalog)
    for name in ("c001", "c002", "c001", "c003"):  # c002 is now the least recently used
        assert len(client.render(AUDIO, 16000, name)) == FRAMES
    assert resident(client) == {"demo", "c001", "c003"}
    for name in CATALOG[10:13]:  # more than the budget: the demo is pinned
        client.render(AUDIO, 16000, name)
        assert "demo" in resident(client) and len(resident(client)) <= 3
    assert "unloaded avatar 'c002' (least recently used)" in catalog.log.read_text(errors="replace")


def test_loads_evictions_and_resident_avatars_are_in_the_metrics(catalog):
    client = client_of(catalog)
    before = catalog.metrics()
    for name in CATALOG[30:33]:  # three loads into a budget of three: c032 at least makes room
        assert len(client.render(AUDIO, 16000, name)) == FRAMES
    after = catalog.metrics()

    def grew(name: str, **labels: str) -> float:
        return after.total(name, **labels) - before.total(name, **labels)

    assert grew("lipsync_avatar_loads_total", result="loaded") == 3
    assert grew("lipsync_avatar_load_duration_seconds_count") == 3
    assert 0 < grew("lipsync_avatar_load_duration_seconds_sum") < 3 * 60
    assert grew("lipsync_avatar_evictions_total") >= 1  # c030, for c032 (and any the budget held before)
    assert after.total("lipsync_avatars_resident") == 3  # the budget: the demo and the last two
    waiting.until(lambda: len(resident(client)) == 3, 60, "Triton's ready avatars down to the budget")
    # Each resident avatar's process holds its runtime and UNet; an evicted one, once its process
    # has ended (an unload finishes after the load it made room for), holds nothing.
    memory = {s.labels["model"]: s.value for s in after.matching("lipsync_model_memory_bytes")}
    for name in resident(client) - {"demo"}:
        assert memory[f"avatar_{name}"] > 50 * 2**20, memory
    waiting.until(
        lambda: catalog.metrics().total("lipsync_model_memory_bytes", model="avatar_c030") == 0,
        60,
        "the evicted avatar's memory at 0",
    )


def test_round_robin_over_more_avatars_than_resident_fails_nothing(catalog):
    client = client_of(catalog)
    names = ["demo", *CATALOG[20:23]] * 2
    with ThreadPoolExecutor(3) as pool:
        counts = list(pool.map(lambda name: len(client.render(AUDIO, 16000, name)), names))
    assert counts == [FRAMES] * len(names)
    # An eviction's unload ends after the load it made room for.
    waiting.until(lambda: len(resident(client)) <= 3, 60, "at most 3 avatars resident")


def test_an_avatar_not_in_the_repository_is_an_invalid_argument(catalog):
    with pytest.raises(InferenceServerException) as error:
        client_of(catalog).render(AUDIO, 16000, "c999")
    assert "StatusCode.INVALID_ARGUMENT" in str(error.value.status())
    assert "'c999'" in error.value.message()
