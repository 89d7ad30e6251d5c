"""Fixtures: the repository's artifacts (built by `make artifacts`) and one real tritonserver
per test run, on free loopback ports, serving the CPU profile."""
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile

from lipsync.avatar import AvatarMedia, media_dir
from lipsync.server import TritonServer

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Serves a copy of the model repository, so tests that import avatars leave no trace."""
    if not (REPOSITORY / "avatar_demo" / "1" / "model.onnx").exists():
        pytest.fail("artifacts missing: run `make test` (or `make artifacts`) first")
    repository = tmp_path_factory.mktemp("served") / "model_repository"
    shutil.copytree(REPOSITORY, repository)
    log = ROOT / "out" / "test-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    triton = TritonServer(repository, http_port=_free_port(), grpc_port=_free_port(), metrics_port=_free_port(), log=log)
    with triton:
        yield triton


@pytest.fixture(scope="session")
def grpc_url(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


@pytest.fixture(scope="session")
def http_url(server) -> str:
    return f"127.0.0.1:{server.http_port}"


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(ROOT / "assets" / "sample.wav", dtype="float32")
    return audio, rate


@pytest.fixture(scope="session")
def demo_media() -> AvatarMedia:
    return AvatarMedia(media_dir(REPOSITORY, "demo"))
