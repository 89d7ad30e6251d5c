"""Fixtures: the repository's artifacts (built by `make artifacts`) and one real tritonserver
per test run, on free loopback ports, serving the CPU profile."""

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch

from lipsync.client import LipsyncClient
from lipsync_protocol.keys import ADMIN, INFERENCE
from lipsync_server import cli as server_cli
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.backend import deliberate_delay
from lipsync_server.creation import face_models
from lipsync_server.demo import talking_head
from lipsync_server.launcher.tritonserver import TritonServer
from lipsync_server.model_configs import set_parameters
from lipsync_server.networks.unet import LipSyncUNet

import reference
import synthetic_data

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


@pytest.fixture(scope="session", autouse=True)
def key_files(tmp_path_factory) -> Path:
    """The key files the servers, the client and the CLI use during the tests: fresh ones, never
    the user's own (lipsync_protocol.keys); returns their folder."""
    folder = tmp_path_factory.mktemp("config") / "lipsync"
    for kind in (ADMIN, INFERENCE):
        os.environ[kind.file_env] = str(folder / kind.file_name)
        os.environ.pop(kind.env, None)
    return folder


@pytest.fixture(scope="session", autouse=True)
def deliberate_delays_allowed() -> None:
    """The servers the tests start may serve a model slowed on purpose (backend.deliberate_delay)."""
    os.environ[deliberate_delay.ALLOWED_ENV] = "1"


@pytest.fixture(scope="session", autouse=True)
def runtime_cache(tmp_path_factory) -> Path:
    """The CPU-runtime measurements the servers make and read during the tests: measured afresh
    in each test run, never taken from the user's cache (lipsync_server.backend.runtime_choice)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["LIPSYNC_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Serves a copy of the model repository, so tests that import avatars leave no trace."""
    if not (REPOSITORY / "avatar_demo" / "1" / "model.onnx").exists():
        pytest.fail("artifacts missing: run `make test` (or `make artifacts`) first")
    repository = tmp_path_factory.mktemp("served") / "model_repository"
    shutil.copytree(REPOSITORY, repository)
    log = ROOT / "out" / "test-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)  # this run's log only: tests read what this server said
    triton = TritonServer.on_free_ports(repository, log=log)
    with triton:
        yield triton


def force_fp32(avatar_folder: Path) -> None:
    """Sets the avatar's CPU config to `precision: fp32`, as a user who wants float output does."""
    set_parameters(avatar_folder / "configs" / "cpu.pbtxt", precision="fp32")


@pytest.fixture(scope="session")
def demo_fp32(server, grpc_url) -> str:
    """The demo avatar again, forced to fp32 by its config (`precision`): for tests of float
    behaviour on a CPU where the demo itself is served in bf16. Returns its name."""
    copy = server.repository / "avatar_demofp32"
    shutil.copytree(server.repository / "avatar_demo", copy)
    force_fp32(copy)
    LipsyncClient(grpc_url).load_avatar("demofp32")
    return "demofp32"


@pytest.fixture(scope="session")
def grpc_url(server) -> str:
    return f"127.0.0.1:{server.grpc_port}"


@pytest.fixture(scope="session")
def http_url(server) -> str:
    return f"127.0.0.1:{server.http_port}"


@pytest.fixture(scope="session")
def urls(grpc_url, http_url) -> dict[str, str]:
    return {"grpc": grpc_url, "http": http_url}


@pytest.fixture(scope="session")
def speech() -> tuple[np.ndarray, int]:
    audio, rate = soundfile.read(ROOT / "assets" / "sample.wav", dtype="float32")
    return audio, rate


@pytest.fixture(scope="session")
def person_video(tmp_path_factory) -> Path:
    """A made-up talking head for avatar creation (demo.talking_head): 6 s at 30 frames/s,
    1280x720, a second face in view from 2 to 3 s, the face turned away from 4 to 5 s. Also
    fetches the face tracking networks into this run's cache, as `lipsync-server face-models`."""
    face_models.fetch()
    clip = talking_head.Clip(seconds=6.0, second_face=(2.0, 3.0), turned_away=(4.0, 5.0))
    return talking_head.write(tmp_path_factory.mktemp("person") / "person.mp4", clip)


@pytest.fixture(scope="session")
def demo_media() -> AvatarMedia:
    return AvatarMedia(media_dir(REPOSITORY, "demo"))


@pytest.fixture(scope="session")
def parity_avatar(server, grpc_url, tmp_path_factory):
    """A dataset and a 'module.'-prefixed checkpoint, imported with the command users run."""
    folder = tmp_path_factory.mktemp("synctalk")
    synthetic_data.write_dataset(folder / "dataset", count=8, seed=4)
    torch.manual_seed(21)
    # Realistic ranges: faces in [0, 1], encoder outputs (post-ReLU) about [0, 5].
    unet = synthetic_data.calibrated(LipSyncUNet(), ((2, 6, 320, 320), 0, 1), ((2, 32, 16, 16), 0, 5))
    torch.save({f"module.{k}": v for k, v in unet.state_dict().items()}, folder / "30.pth")
    # The shared encoder is re-imported as a new version with the demo's trained weights, so that
    # the demo avatar, served through the same (latest) encoder, stays in sync in later tests.
    shutil.copyfile(ROOT / "checkpoints" / "audio_visual_encoder.pth", folder / "audio_visual_encoder.pth")
    code = server_cli.main(
        [
            "import",
            "--url",
            grpc_url,
            "parity",
            "--dataset",
            str(folder / "dataset"),
            "--checkpoint",
            str(folder / "30.pth"),
            "--paste",
            "hard",  # the reference's
            "--audio-encoder",
            str(folder / "audio_visual_encoder.pth"),
            "--repository",
            str(server.repository),
        ]
    )
    assert code == 0
    # Parity is float32's: a CPU with bf16 would otherwise serve the versions in bf16 (they reach
    # its quality bar), as a user who wants exact float output also sets it.
    force_fp32(server.repository / "avatar_parity")
    admin = LipsyncClient(grpc_url)
    admin.triton.load_model("audio_encoder", headers=admin.admin_headers)  # serves the imported encoder version
    # Version 2: default-initialised weights (nearly input-independent, but float32-exact).
    torch.manual_seed(22)
    plain = LipSyncUNet().eval()
    torch.save(plain.state_dict(), folder / "31.pth")
    code = server_cli.main(
        [
            "import",
            "--url",
            grpc_url,
            "parity",
            "--checkpoint",
            str(folder / "31.pth"),
            "--repository",
            str(server.repository),
            "--load",
        ]
    )
    assert code == 0
    frames = [cv2.imread(str(folder / "dataset" / "full_body_img" / f"{n}.jpg")) for n in range(8)]
    rects = [reference.crop_rect(folder / "dataset" / "landmarks" / f"{n}.lms") for n in range(8)]
    return unet, plain, frames, rects, folder / "audio_visual_encoder.pth"
