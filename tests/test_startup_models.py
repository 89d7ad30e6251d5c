"""What a server loads at start (the launcher and the image's entrypoint): the pipeline's models
and the pinned avatars, not the rest of the catalog."""

import shutil
from pathlib import Path

import pytest

from lipsync_protocol.avatar_names import AvatarNameError
from lipsync_server.launcher.startup import startup_models
from lipsync_server.launcher.tritonserver import TritonServer
from lipsync_server.model_configs import set_parameters

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ["audio_encoder", "compositor", "face_generator", "lipsync", "lipsync_faces", "mel", "request_validator"]


def repository_with(tmp_path: Path, avatars: list[str], pinned: str) -> Path:
    repository = tmp_path / "model_repository"
    for model in PIPELINE:
        source = ROOT / "model_repository" / model
        shutil.copytree(source, repository / model, ignore=shutil.ignore_patterns("__pycache__"))
    for name in avatars:
        (repository / f"avatar_{name}").mkdir()
        shutil.copy(ROOT / "model_repository" / "avatar_demo" / "config.pbtxt", repository / f"avatar_{name}")
    config = repository / "face_generator" / "config.pbtxt"
    set_parameters(config, pinned_avatars=pinned)
    return repository


def test_the_pipeline_and_the_pinned_avatars_load_at_start(tmp_path):
    repository = repository_with(tmp_path, ["demo", "may", "obama", "zoe"], pinned="may, zoe")
    assert startup_models(repository, "cpu") == sorted([*PIPELINE, "avatar_may", "avatar_zoe"])
    loads = [f for f in TritonServer(repository).command() if f.startswith("--load-model=")]
    assert loads == [f"--load-model={m}" for m in sorted([*PIPELINE, "avatar_may", "avatar_zoe"])]


def test_a_pinned_name_that_is_not_an_avatar_name_is_refused(tmp_path):
    with pytest.raises(AvatarNameError, match="invalid avatar name '../etc'"):
        startup_models(repository_with(tmp_path, ["demo"], pinned="../etc"), "cpu")


def test_a_repository_without_the_pipeline_loads_every_model(tmp_path):
    for name in ("may", "zoe"):
        (tmp_path / f"avatar_{name}").mkdir()
        shutil.copy(ROOT / "model_repository" / "avatar_demo" / "config.pbtxt", tmp_path / f"avatar_{name}")
    assert startup_models(tmp_path, "cpu") == ["avatar_may", "avatar_zoe"]
