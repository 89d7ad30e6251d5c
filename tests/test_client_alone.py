"""The client distribution installed alone, as an application would (`pip install ./client` in a
fresh environment): none of the server's libraries come with it, and its `lipsync` command
renders against the running server the frames the server's own client gets."""

import io
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import soundfile

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
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(ROOT / "client")],
        check=True,
        timeout=600,
    )
    return venv / "bin"


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

    listed = subprocess.run([lipsync, "--url", urls["grpc"], "avatars"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and listed.stdout.startswith("demo\t"), listed.stderr
