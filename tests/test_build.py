"""The build as a user runs it: `make clean` and `make artifacts` never touch an avatar or a
version a user added; editing any file an artifact is built from rebuilds it (both profiles'
DALI: tests/test_gpu_profile.py)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lipsync_server.demo import synthetic
from lipsync_server.networks.unet import LipSyncUNet

import synthetic_data

ROOT = Path(__file__).resolve().parents[1]
LIPSYNC_SERVER = Path(sys.executable).parent / "lipsync-server"


def make(project: Path, *targets: str, check: bool = True) -> subprocess.CompletedProcess:
    # This environment's python instead of the copy's own .venv (-o: never set one up there).
    return subprocess.run(
        ["make", "-C", str(project), f"PY={sys.executable}", "-o", ".stamps/venv", *targets],
        capture_output=True,
        text=True,
        timeout=900,
        check=check,
    )


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of this checkout (tracked files and the built artifacts), as a user's clone."""
    copy = tmp_path_factory.mktemp("clone") / "project"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, tracked):
        target = copy / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name.decode(), target)
    shutil.copytree(ROOT / "model_repository", copy / "model_repository", dirs_exist_ok=True)
    return copy


def test_clean_and_rebuild_keep_what_users_added(project, tmp_path):
    repository = project / "model_repository"
    synthetic_data.write_dataset(tmp_path / "dataset", count=4, seed=5)
    torch.manual_seed(5)
    torch.save(LipSyncUNet(base_channels=4).state_dict(), tmp_path / "7.pth")
    added = [
        [
            str(LIPSYNC_SERVER),
            "import",
            "guest",
            "--dataset",
            str(tmp_path / "dataset"),
            "--checkpoint",
            str(tmp_path / "7.pth"),
        ],
        [str(LIPSYNC_SERVER), "quantize", "demo", "--from-version", str(synthetic.TRAINED_VERSION), "--min-psnr", "0"],
    ]
    for command in added:
        done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600)  # default repository
        assert done.returncode == 0, done.stderr
    users = {"guest": files_under(repository / "avatar_guest"), "demo 3": files_under(repository / "avatar_demo" / "3")}
    assert users["guest"] and "model.onnx" in users["demo 3"]

    make(project, "clean")
    assert not (repository / "avatar_demo" / str(synthetic.BENCHMARK_VERSION)).exists()  # the build's own: gone
    assert not (repository / "audio_encoder" / "1" / "model.onnx").exists()
    assert files_under(repository / "avatar_guest") == users["guest"]
    assert files_under(repository / "avatar_demo" / "3") == users["demo 3"]

    make(project, "artifacts")
    assert (repository / "avatar_demo" / str(synthetic.TRAINED_VERSION) / "model.onnx").is_file()
    assert files_under(repository / "avatar_guest") == users["guest"]
    assert files_under(repository / "avatar_demo" / "3") == users["demo 3"]


def test_editing_any_source_of_an_artifact_rebuilds_it(project):
    make(project, "artifacts")
    assert make(project, "-q", "artifacts", check=False).returncode == 0  # up to date
    sources = subprocess.run(
        [sys.executable, "scripts/artifact_sources.py"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.split()
    # framing.py's constants are compiled into the encoder graph; networks/ are the graphs.
    assert {
        "protocol/lipsync_protocol/framing.py",
        "server/lipsync_server/networks/exported.py",
        "checkpoints/demo/3.pth",
    } <= set(sources)
    assert not any(s.startswith("client/") for s in sources)  # no client module is part of an artifact
    (project / "protocol" / "lipsync_protocol" / "framing.py").touch()
    assert make(project, "-q", "artifacts", check=False).returncode == 1  # out of date: `make artifacts` rebuilds
