"""The launcher as a user runs it (`lipsync-server serve`, what `make serve` runs): the
model-repository API is keyed by default with a key file only the user can read, which the CLI
finds; bursts of stop signals stop it; it serves the working directory's repository from a
non-editable install. And the container's entrypoint refuses to serve without a key."""

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from keyed import admin_headers
from tritonclient.utils import InferenceServerException

from lipsync_protocol import waiting
from lipsync_protocol.keys import ADMIN, INFERENCE
from lipsync_server.launcher import processes
from lipsync_server.launcher.container import server_from_environment
from lipsync_server.launcher.profiles import CPU, GPU
from lipsync_server.launcher.tritonserver import TritonServer

from launcher import Launcher

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
LIPSYNC = Path(sys.executable).parent / "lipsync"
# A model uploaded through the repository API: its code runs on the server as soon as it loads.
UPLOADED_CONFIG = {
    "name": "uploaded",
    "backend": "python",
    "max_batch_size": 0,
    "input": [{"name": "IN", "data_type": "TYPE_FP32", "dims": [1]}],
    "output": [{"name": "OUT", "data_type": "TYPE_FP32", "dims": [1]}],
}
UPLOADED_CODE = """from pathlib import Path
Path({marker!r}).write_text("ran")


class TritonPythonModel:
    def execute(self, requests):
        return []
"""


def wait_for(url: str, timeout: float = 120.0) -> None:
    waiting.until(lambda: processes.answering(None, url, 2.0), timeout, f"{url} ready", interval_s=0.3)


def wait_for_line(launcher: Launcher, text: str, timeout: float = 30.0) -> str:
    """The log once it holds `text`, or as it is after `timeout`."""
    try:
        waiting.until(lambda: text in launcher.log.read_text(errors="replace"), timeout, text, interval_s=0.2)
    except TimeoutError:
        pass
    return launcher.log.read_text(errors="replace")


def upload(launcher: Launcher, protocol: str, marker: Path, headers: dict | None = None) -> None:
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(launcher.url(protocol))
    files = {"file:1/model.py": UPLOADED_CODE.format(marker=str(marker)).encode()}
    client.load_model("uploaded", headers=headers, config=json.dumps(UPLOADED_CONFIG), files=files)


def port_is_free(port: int) -> bool:
    """A new server could listen there (as servers do, reusing ports left in TIME_WAIT)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


@pytest.fixture(scope="module")
def keyed_by_default(tmp_path_factory):
    """The launcher with no key given, as `make serve` runs it, on a repository with the demo
    avatar; its key file does not exist before it starts."""
    folder = tmp_path_factory.mktemp("default")
    repository = folder / "model_repository"
    shutil.copytree(ROOT / "model_repository" / "avatar_demo", repository / "avatar_demo")
    env = {kind.file_env: str(folder / "config" / "lipsync" / kind.file_name) for kind in (ADMIN, INFERENCE)}
    launched = Launcher(repository, ROOT / "out" / "launcher-default.log", env=env)
    launched.log.unlink(missing_ok=True)
    launched.start(wait_for_ensemble=False)
    wait_for(f"http://{launched.url('http')}/v2/models/avatar_demo/ready")
    yield launched
    launched.stop()


def key_file_of(launcher: Launcher) -> Path:
    return Path(launcher.env[ADMIN.file_env])


def test_the_default_launcher_makes_a_key_only_its_user_can_read(keyed_by_default):
    path = key_file_of(keyed_by_default)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key = path.read_text().strip()
    assert len(key) >= 32
    log = wait_for_line(keyed_by_default, "administrator key from")
    assert f"administrator key from {path}" in log and key not in log


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_an_unkeyed_upload_is_refused_and_runs_nothing(keyed_by_default, protocol, tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(InferenceServerException) as error:
        upload(keyed_by_default, protocol, marker)
    assert "restricted" in error.value.message()
    # Triton's load call answers once a load has ended: had this one been loaded, its code
    # would have run by now, and the model would be in the index.
    assert not marker.exists()
    index = httpclient.InferenceServerClient(keyed_by_default.url("http")).get_model_repository_index(
        headers={ADMIN.header: key_file_of(keyed_by_default).read_text().strip()}
    )
    assert "uploaded" not in {entry["name"] for entry in index}


def test_the_cli_manages_avatars_with_no_key_flag(keyed_by_default):
    def lipsync(*args: str) -> str:
        done = subprocess.run(
            [str(LIPSYNC), "--url", keyed_by_default.url(), *args],
            env=keyed_by_default.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert lipsync("avatars").split("\n")[0] == "demo\t1: READY, 2: READY"
    assert lipsync("unload", "demo").strip() == "unloaded demo"
    assert "READY" not in lipsync("avatars")
    assert lipsync("load", "demo").strip() == "loaded demo"
    assert lipsync("avatars").split("\n")[0] == "demo\t1: READY, 2: READY"


def test_a_keyed_upload_is_accepted(keyed_by_default, tmp_path):
    marker = tmp_path / "ran"
    key = key_file_of(keyed_by_default).read_text().strip()
    upload(keyed_by_default, "grpc", marker, headers={f"triton-grpc-protocol-{ADMIN.header}": key})
    assert marker.read_text() == "ran"  # the administrator's model loaded, and its code ran


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_burst_of_stop_signals_stops_the_launcher_and_frees_its_ports(number, tmp_path):
    """A handler that took a lock deadlocked when a second signal interrupted it; repeated
    bursts at different moments catch that race."""
    (tmp_path / "model_repository").mkdir()
    for round_ in range(4):
        launched = Launcher(tmp_path / "model_repository", tmp_path / "launcher.log").start(wait_for_ensemble=False)
        wait_for(f"http://{launched.url('http')}/v2/health/ready")
        time.sleep(0.05 * round_)
        for _ in range(300):
            os.kill(launched.process.pid, number)
        servers = [p.pid for p in psutil.Process(launched.process.pid).children()]  # tritonserver, own session
        try:
            assert launched.process.wait(45) == 0
        finally:
            for pid in [launched.process.pid, *servers] if launched.process.poll() is None else []:
                os.kill(pid, signal.SIGKILL)
        assert all(port_is_free(port) for port in launched.ports.values())


def test_a_non_editable_install_serves_the_working_directorys_repository(tmp_path):
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(ROOT / "protocol"),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    env = {"PYTHONPATH": str(site)}
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    refused = subprocess.run(
        [sys.executable, "-m", "lipsync_server", "serve"],
        cwd=elsewhere,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and f"no model repository at {elsewhere / 'model_repository'}" in refused.stderr

    work = tmp_path / "work"
    shutil.copytree(ROOT / "model_repository" / "request_validator", work / "model_repository" / "request_validator")
    launched = Launcher(None, tmp_path / "launcher.log", env=env, cwd=work).start(wait_for_ensemble=False)
    try:
        wait_for(f"http://{launched.url('http')}/v2/models/request_validator/ready")
        wait_for_line(launched, "lip-sync server ready")
        config = urllib.request.Request(
            f"http://{launched.url('http')}/v2/models/request_validator/config", headers=admin_headers("http")
        )
        status = json.loads(urllib.request.urlopen(config).read())
        assert status["name"] == "request_validator"
    finally:
        assert launched.stop() == 0
    assert f"repository {work / 'model_repository'}" in launched.log.read_text(errors="replace")
    # With that environment the server and its protocol are the installed copies, not this checkout's.
    located = subprocess.run(
        [
            sys.executable,
            "-c",
            "import lipsync_protocol, lipsync_server; print(lipsync_protocol.__file__, lipsync_server.__file__)",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert all(path.startswith(str(site)) for path in located.stdout.split())


KEYS = {ADMIN.env: "an-administrator-key-long-enough", INFERENCE.env: "an-inference-key-long-enough"}


def container(env: dict[str, str]) -> subprocess.CompletedProcess:
    """`lipsync-server container` (the image's entrypoint) with only these settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIPSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "lipsync_server", "container"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("key", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_the_container_refuses_to_serve_without_a_key(key):
    env = {INFERENCE.env: KEYS[INFERENCE.env], **({ADMIN.env: key} if key is not None else {})}
    done = container(env)
    assert done.returncode == 2
    assert ADMIN.env in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"LIPSYNC_PROFILE": "tpu"}, "profile must be one of gpu, cpu, not 'tpu'"),
        ({"LIPSYNC_MODEL_REPOSITORY": "/srv/lip-sync"}, "loads mel only from a path of letters"),
        ({"LIPSYNC_MODEL_REPOSITORY": "/srv/../models"}, "without '..'"),
    ],
    ids=["unknown profile", "dash in the path", "dot-dot in the path"],
)
def test_the_container_refuses_settings_the_gpu_image_cannot_serve(env, expected):
    # The DALI backend would refuse the mel model's path at load, after every plan was built.
    done = container({**KEYS, **env})
    assert done.returncode == 2 and expected in done.stderr


def test_the_container_and_the_launcher_run_one_command_line():
    """One definition of the server's command line: what the image runs (container.py, from its
    environment) is the launcher's, but for where tritonserver is and the addresses it binds."""
    with tempfile.TemporaryDirectory(prefix="lipsync_") as folder:  # pytest's own have a '-'
        compare_command_lines(Path(folder) / "model_repository")


def compare_command_lines(repository: Path) -> None:
    shutil.copytree(ROOT / "model_repository" / "request_validator", repository / "request_validator")
    env = {**KEYS, "LIPSYNC_MODEL_REPOSITORY": str(repository)}
    for profile in (GPU, CPU):
        image = server_from_environment({**env, "LIPSYNC_PROFILE": profile.name}).command()
        launcher = TritonServer(
            repository, profile=profile, admin_key=KEYS[ADMIN.env], inference_key=KEYS[INFERENCE.env]
        ).command()
        assert image[0] == "tritonserver" and launcher[0] != "tritonserver"
        differ = ("--backend-directory=", "--cache-directory=", "--http-address=", "--grpc-address=")
        differ += ("--metrics-address=", "--backend-config=python,shm-region-prefix-name=")
        assert [f for f in image[1:] if not f.startswith(differ)] == [
            f for f in launcher[1:] if not f.startswith(differ)
        ]
        assert f"--model-config-name={profile.config_name}" in image
        assert f"--allow-gpu-metrics={'true' if profile is GPU else 'false'}" in image
        assert "--http-address=0.0.0.0" in image and "--http-address=127.0.0.1" in launcher
        for flag in ("--disable-auto-complete-config", "--strict-readiness=false", "--model-control-mode=explicit"):
            assert flag in image
    stored = server_from_environment({**KEYS, "LIPSYNC_MODEL_REPOSITORY": "s3://bucket/models"}).command()
    assert "--model-repository=s3://bucket/models" in stored and "--load-model=*" in stored
