"""The client distribution installed alone, as an application would (`pip install ./client` in a
fresh environment, with the newest versions it allows: numpy 2 and the newest tritonclient, where
the server pins numpy 1 and tritonclient 2.52): none of the server's libraries come with it, its
own tests pass there, and its `lipsync` command renders and streams against the running server
the frames the server's own client gets."""

import importlib.metadata
import io
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import soundfile
from packaging.version import Version

from lipsync.client import LipsyncClient

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
# Distributions the server needs and a client must not bring along.
SERVER_ONLY = (
    "torch",
    "onnxruntime",
    "nvidia-dali",
    "opencv-python",
    "scipy",
    "nvidia-pytriton",
    "triton-lipsync-server",
)
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m; print(' '.join(d.metadata['Name'].lower() for d in m.distributions()))"
)


@pytest.fixture(scope="module")
def client_env(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("client-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            ROOT / "protocol",
            f"{ROOT / 'client'}[web]",
            "pytest",
        ],
        check=True,
        timeout=600,
    )
    return venv / "bin"


def version_in(client_env: Path, distribution: str) -> Version:
    shown = subprocess.run(
        [str(client_env / "python"), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Version(shown.stdout.strip())


def test_the_client_takes_numpy_2_and_newer_tritonclients_than_the_server(client_env):
    assert version_in(client_env, "numpy").major >= 2
    assert version_in(client_env, "tritonclient") > Version(importlib.metadata.version("tritonclient"))


def test_the_clients_own_tests_pass_in_its_environment(client_env):
    """The tests of the client's logic that need no server: stream segmentation, retries and the web
    gateway's checks (no conftest: it is the server's)."""
    tests = [str(ROOT / "tests" / name) for name in ("test_streaming_plan.py", "test_web_gateway.py", "test_retry.py")]
    ran = subprocess.run(
        [str(client_env / "python"), "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider", *tests],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert ran.returncode == 0 and " passed" in ran.stdout, ran.stdout[-3000:] + ran.stderr[-3000:]


def test_the_client_installs_without_the_servers_libraries(client_env):
    listed = subprocess.run(
        [str(client_env / "python"), "-c", LIST_DISTRIBUTIONS], capture_output=True, text=True, check=True
    )
    installed = listed.stdout.split()
    assert "triton-lipsync-client" in installed and "tritonclient" in installed
    assert [name for name in installed if name.startswith(SERVER_ONLY)] == []
    assert subprocess.run([str(client_env / "python"), "-c", "import lipsync.client, lipsync.cli"]).returncode == 0


def test_the_client_alone_renders_against_the_server(client_env, urls, speech, tmp_path):
    audio, rate = speech[0][: 2 * speech[1]], speech[1]
    wav = tmp_path / "speech.wav"
    soundfile.write(wav, audio, rate)
    env = {**os.environ, "PATH": f"{client_env}{os.pathsep}{os.environ['PATH']}"}
    lipsync = str(client_env / "lipsync")

    folder = tmp_path / "frames"
    command = [lipsync, "--url", urls["grpc"], "render", str(wav), "--avatar", "demo", "-o", str(folder)]
    subprocess.run(command, env=env, check=True, timeout=300)
    with LipsyncClient(urls["grpc"]) as client:
        expected = client.render(audio, rate, "demo")
    assert [p.read_bytes() for p in sorted(folder.glob("*.jpg"))] == expected

    movie = tmp_path / "speech.mp4"
    command = [lipsync, "--url", urls["http"], "--protocol", "http", "render", str(wav), "--avatar", "demo"]
    subprocess.run([*command, "-o", str(movie)], env=env, check=True, timeout=300)
    with av.open(io.BytesIO(movie.read_bytes())) as container:
        assert sum(1 for _ in container.decode(video=0)) == len(expected)

    streamed = tmp_path / "frames-streamed"
    command = [lipsync, "--url", urls["grpc"], "stream", str(wav), "--avatar", "demo", "-o", str(streamed)]
    subprocess.run(command, env=env, check=True, timeout=300)
    assert [p.read_bytes() for p in sorted(streamed.glob("*.jpg"))] == expected  # streaming is exact

    listed = subprocess.run([lipsync, "--url", urls["grpc"], "avatars"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.startswith("demo\t"), listed.stderr
