"""Faults and control on a server of its own (started with an administrator key): the
model-repository API needs the key, a killed model process fails only its requests,
a restart brings every avatar back as it was, and SIGTERM lets in-flight requests finish."""
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from lipsync import framing
from lipsync.client import LipsyncClient
from lipsync.server import TritonServer, free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
KEY = "test-admin-key"
AUDIO = (0.1 * np.sin(np.arange(24000) / 9)).astype(np.float32)  # 1.5 s: 36 frames


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    repository = tmp_path_factory.mktemp("guarded") / "model_repository"
    shutil.copytree(ROOT / "model_repository", repository)
    server = TritonServer(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(),
                          log=ROOT / "out" / "fault-server.log", admin_key=KEY)
    with server:
        yield server


def url(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


def stub_pids(server, model: str) -> list[int]:
    """The python-backend stub processes serving `model` (their command line names it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"triton_python_backend_stub") and any(f"/{model}/".encode() in a for a in command):
            pids.append(int(entry.name))
    return pids


@pytest.mark.parametrize("protocol, port", [("grpc", "grpc_port"), ("http", "http_port")])
def test_model_control_needs_the_admin_key(guarded, protocol, port):
    address = f"127.0.0.1:{getattr(guarded, port)}"
    anonymous, admin = LipsyncClient(address, protocol), LipsyncClient(address, protocol, admin_key=KEY)
    for call in (anonymous.avatars, lambda: anonymous.unload_avatar("demo"), lambda: anonymous.load_avatar("demo")):
        with pytest.raises(InferenceServerException) as error:
            call()
        assert "restricted" in error.value.message() and "lipsync-admin-key" in error.value.message()
    assert {a.name: a.ready for a in admin.avatars()}["demo"]
    admin.load_avatar("demo")  # reloading with the key works
    assert len(anonymous.render(AUDIO, 16000, "demo")) == framing.frame_count(len(AUDIO))  # inference needs no key


def test_killed_model_process_fails_its_requests_and_the_server_recovers(guarded):
    client = LipsyncClient(url(guarded))
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(client.render, np.tile(AUDIO, 3), 16000, "demo")
        time.sleep(2.0)  # the request is in the UNet by now: 108 frames take over 10 s here
        victims = stub_pids(guarded, "avatar_demo")
        assert victims, "no stub process found for avatar_demo"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(InferenceServerException) as error:
            pending.result(timeout=120)
    assert "avatar 'demo' UNet failed" in error.value.message()
    # The python backend restarts the stub on the next request; later requests succeed.
    deadline, frames = time.monotonic() + 120, None
    while frames is None and time.monotonic() < deadline:
        try:
            frames = client.render(AUDIO, 16000, "demo")
        except InferenceServerException:
            time.sleep(2)
    assert frames is not None and len(frames) == framing.frame_count(len(AUDIO))


def test_restart_brings_every_avatar_back_as_it_was(guarded):
    admin = LipsyncClient(url(guarded), admin_key=KEY)
    before = {a.name: a.versions for a in admin.avatars()}
    frames = admin.render(AUDIO, 16000, "demo", version=1)
    guarded.stop()
    guarded.start().wait_ready()
    admin = LipsyncClient(url(guarded), admin_key=KEY)
    assert {a.name: a.versions for a in admin.avatars()} == before
    assert admin.render(AUDIO, 16000, "demo", version=1) == frames


def test_sigterm_lets_in_flight_requests_finish(guarded):
    client = LipsyncClient(url(guarded))
    started = threading.Barrier(3)

    def render(start):
        started.wait()
        return len(client.render(AUDIO, 16000, "demo", start_frame=start))

    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(render, s) for s in (0, 50)]
        started.wait()
        time.sleep(1.0)  # both requests are in the server: 72 frames take several seconds here
        guarded.process.send_signal(signal.SIGTERM)
        assert [p.result(timeout=60) for p in pending] == [framing.frame_count(len(AUDIO))] * 2
    assert guarded.process.wait(timeout=60) == 0
