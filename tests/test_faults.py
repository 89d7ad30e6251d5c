"""Faults and control through the real launcher (`lipsync-server serve`, what `make serve`
runs) with an administrator key: the model-repository API needs the key; a killed model
process fails only the requests it held and the launcher restarts the server; SIGTERM lets
in-flight requests finish; a restart brings every avatar back as it was."""

import os
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing, waiting
from lipsync_server.launcher import processes, scrape

from launcher import Launcher

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
KEY = "test-administrator-key"
AUDIO = (0.1 * np.sin(np.arange(24000) / 9)).astype(np.float32)  # 1.5 s: 36 frames
FRAMES = framing.frame_count(len(AUDIO))


@pytest.fixture(scope="module")
def launcher(tmp_path_factory):
    repository = tmp_path_factory.mktemp("launched") / "model_repository"
    shutil.copytree(ROOT / "model_repository", repository)
    log = ROOT / "out" / "fault-server.log"
    log.unlink(missing_ok=True)
    launched = Launcher(repository, log, ("--admin-key", KEY)).start()
    yield launched
    launched.stop()


def stub_pids(launcher: Launcher, model: str) -> list[int]:
    """Live python-backend stubs serving `model` under this launcher's tritonserver (other
    servers, such as the session's, run stubs for the same model names)."""
    pids = []
    for process in processes.tree(launcher.process.pid):
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        if command and command[0].endswith("triton_python_backend_stub") and any(f"/{model}/" in a for a in command):
            pids.append(process.pid)
    return pids


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_model_control_needs_the_admin_key(launcher, protocol):
    wrong = LipsyncClient(launcher.url(protocol), protocol, admin_key="not-the-key")
    admin = LipsyncClient(launcher.url(protocol), protocol, admin_key=KEY)
    for call in (wrong.avatars, lambda: wrong.unload_avatar("demo"), lambda: wrong.load_avatar("demo")):
        with pytest.raises(InferenceServerException) as error:
            call()
        assert "restricted" in error.value.message() and "lipsync-admin-key" in error.value.message()
    assert {a.name: a.ready for a in admin.avatars()}["demo"]
    admin.load_avatar("demo")  # with the key, loading works
    assert len(wrong.render(AUDIO, 16000, "demo")) == FRAMES  # inference needs no key


def shared_memory_regions(launcher: Launcher) -> set[Path]:
    """The python-backend shared-memory regions of this launcher's tritonserver (named by the
    prefix on its command line)."""
    (server,) = psutil.Process(launcher.process.pid).children()
    arguments = server.cmdline()
    prefix = next(a.rsplit("=", 1)[1] for a in arguments if "shm-region-prefix-name=" in a)
    return set(Path("/dev/shm").glob(prefix + "*"))


def statistic(launcher: Launcher, model: str, field: str) -> int:
    return LipsyncClient(launcher.url(), admin_key=KEY).statistics().get(model, {}).get(field, 0)


def unet_frames(launcher: Launcher) -> int:
    """Frames the demo's reference-size version has made so far."""
    return statistic(launcher, "avatar_demo/1", "inferences")


def validated(launcher: Launcher) -> int:
    """Requests request_validator has passed on into the pipeline so far."""
    return statistic(launcher, "request_validator/1", "requests")


def idle(launcher: Launcher) -> bool:
    """No frames admitted and not yet made, and no request queued at any model."""
    metrics = scrape.scrape(f"127.0.0.1:{launcher.ports['metrics']}")
    return not metrics.total("lipsync_frames_in_flight") and not metrics.total("nv_inference_pending_request_count")


def wait_for(condition, timeout_s: float = 60.0) -> None:
    waiting.until(condition, timeout_s, "the server getting there", interval_s=0.05)


def test_killed_model_process_fails_its_requests_and_the_server_serves_again(launcher):
    client = LipsyncClient(launcher.url())
    regions = shared_memory_regions(launcher)
    assert regions
    with ThreadPoolExecutor(1) as pool:
        # Version 1 is the reference-size network: 144 frames are many batches, so the request
        # is still in the UNet once its first batch is done, when the stubs die.
        made = unet_frames(launcher)
        pending = pool.submit(client.render, np.tile(AUDIO, 4), 16000, "demo", version=1)
        wait_for(lambda: unet_frames(launcher) > made)
        victims = stub_pids(launcher, "avatar_demo")
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(InferenceServerException) as error:
            pending.result(timeout=120)
    assert "avatar 'demo' UNet failed: Stub process" in error.value.message()
    assert "StatusCode.INTERNAL" in str(error.value.status())
    # Triton 24.x does not restart a dead model process; the launcher restarts the server.
    wait_for(lambda: "lipsync-server: ready again" in launcher.log.read_text(errors="replace"), 240)
    # A new connection, as a user's next session makes: the old one's socket went with the server.
    assert len(LipsyncClient(launcher.url()).render(AUDIO, 16000, "demo")) == FRAMES
    assert "died: restarting tritonserver" in launcher.log.read_text(errors="replace")
    assert not regions & shared_memory_regions(launcher)  # the killed server's shared memory is freed


def test_sigterm_finishes_in_flight_requests_a_stream_rides_out_the_restart_and_avatars_come_back(launcher):
    """A replica restarting (a rolling update): SIGTERM lets the requests in flight finish; a live
    stream's segments sent while it drains, stops and starts again are retried until it is back,
    and the stream gets every frame, identical to one request for the whole clip; the restart
    brings the avatars back as they were."""
    admin = LipsyncClient(launcher.url(), admin_key=KEY)
    before = {a.name: a.versions for a in admin.avatars()}
    reference = admin.render(AUDIO, 16000, "demo", version=1)
    audio = np.tile(AUDIO, 2)  # 3 s: 75 frames
    client = LipsyncClient(launcher.url())
    whole = client.render(audio, 16000, "demo")
    halfway, stopped = threading.Event(), threading.Event()

    def chunks():
        for i, begin in enumerate(range(0, len(audio), 3200)):  # 0.2 s chunks, as live audio comes
            if i == 7:
                halfway.set()
                stopped.wait(120)  # the rest is sent while the server is down or starting
            yield audio[begin : begin + 3200]

    started = threading.Barrier(3)

    def render(start):
        started.wait()
        return len(admin.render(AUDIO, 16000, "demo", version=1, start_frame=start))

    with ThreadPoolExecutor(3) as pool:
        streamed = pool.submit(lambda: list(client.stream(chunks(), 16000, "demo")))
        assert halfway.wait(60)
        wait_for(lambda: idle(launcher))  # the stream's first segments are done: it waits for audio
        checked = validated(launcher)
        pending = [pool.submit(render, s) for s in (0, 50)]
        started.wait()
        wait_for(lambda: validated(launcher) == checked + 2)  # both requests are in the pipeline
        launcher.process.send_signal(signal.SIGTERM)  # drains, then stops
        assert [p.result(timeout=60) for p in pending] == [FRAMES, FRAMES]
        assert launcher.process.wait(60) == 0
        stopped.set()
        # A segment sent while the server is away fails and is retried: restart after that.
        waiting.until(lambda: client.segments_retried > 0, 60, "a segment retried while the server is away")
        launcher.start(wait_for_ensemble=False)
        frames = streamed.result(timeout=180)
    assert len(frames) == len(whole) and frames == whole
    assert client.segments_retried > 0  # some segments did fail while the server was away
    admin = LipsyncClient(launcher.url(), admin_key=KEY)
    assert {a.name: a.versions for a in admin.avatars()} == before
    assert admin.render(AUDIO, 16000, "demo", version=1) == reference
