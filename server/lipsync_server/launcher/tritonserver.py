"""Starts the real `tritonserver` on this machine: the binary shipped in the nvidia-pytriton wheel.

`lipsync-server serve` (what `make serve` runs) serves a model repository with the CPU profile
and explicit model control on 127.0.0.1 until Ctrl-C or SIGTERM. The image runs the same server
with the tritonserver installed there (launcher/container.py). The repository is
--repository, else $LIPSYNC_MODEL_REPOSITORY, else ./model_repository. Every API but health and
gRPC inference needs a key (lipsync_protocol.keys says which and where they come from). Tests and
benchmarks use TritonServer directly.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from lipsync_protocol import waiting
from lipsync_protocol.keys import ADMIN, INFERENCE
from lipsync_server.avatars.repository import default_repository
from lipsync_server.backend import ticket
from lipsync_server.backend.admission import board_path

from . import drain, processes, scrape, startup
from .keys import for_server, server_flags, source, write_key_file
from .profiles import CPU, PROFILE_ENV, Profile

SHARED_MEMORY = Path("/dev/shm")
OBJECT_STORAGE = ("s3://", "gs://", "as://")


@dataclass(frozen=True)
class Installation:
    """Where tritonserver and its backends are: the flags and environment that differ between
    the wheel on this machine (embedded) and the NGC image (image)."""

    binary: str
    flags: tuple[str, ...] = ()
    embedded: bool = False  # model processes import this interpreter's packages

    @classmethod
    def embedded_wheel(cls) -> "Installation":
        """nvidia-pytriton's tritonserver, with the python backend's stub for this interpreter."""
        import pytriton

        home = Path(pytriton.__file__).parent / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = home / "python_backend_stubs" / version / "triton_python_backend_stub"
        target = home / "backends" / "python" / stub.name
        if not target.exists():
            shutil.copy2(stub, target)
        flags = (f"--backend-directory={home / 'backends'}", f"--cache-directory={home / 'caches'}")
        return cls(str(home / "bin" / "tritonserver"), flags, embedded=True)


IMAGE = Installation("tritonserver")  # NGC's tritonserver image: on PATH, its own backends


def free_port() -> int:
    """A free TCP port on the loopback interface (for servers started by tests and benchmarks)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# After a model process died: how long a drained server has to exit before it is killed.
CRASHED_STOP_S = 5.0


class TritonServer:
    def __init__(
        self,
        repository: Path | str | None = None,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        profile: Profile = CPU,
        log: Path | None = None,
        extra_args: tuple[str, ...] = (),
        admin_key: str | None = None,
        inference_key: str | None = None,
        installation: Installation | None = None,
    ):
        # A folder, or object storage that tritonserver reads itself (s3://, gs://, as://).
        self.repository: Path | str = (
            repository
            if isinstance(repository, str) and is_object_storage(repository)
            else Path(repository or default_repository())
        )
        self.host, self.http_port, self.grpc_port, self.metrics_port = host, http_port, grpc_port, metrics_port
        self.profile = profile
        self.installation = installation or Installation.embedded_wheel()
        self.log = log
        self.extra_args = extra_args
        self.admin_key = for_server(ADMIN, admin_key)
        self.inference_key = for_server(INFERENCE, inference_key)
        # The python backend's shared-memory regions, named so that this server's can be found:
        # a model process that dies (killed, crashed) leaves its region behind.
        self.shm_prefix = f"lipsync_{secrets.token_hex(6)}_"
        self.process: subprocess.Popen | None = None
        self.pipeline_secret = ""  # set by start()

    def command(self) -> list[str]:
        return [
            self.installation.binary,
            f"--model-repository={self.repository}",
            f"--model-config-name={self.profile.config_name}",
            *(f"--load-model={model}" for model in self.startup_models()),
            *self.installation.flags,
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            f"--allow-gpu-metrics={str(self.profile.gpu_metrics).lower()}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *server_flags(self.admin_key, self.inference_key),
            *self.extra_args,
        ]

    def startup_models(self) -> list[str]:
        """The pipeline and the pinned avatars; everything where the repository cannot be listed."""
        if isinstance(self.repository, str):
            return ["*"]
        return startup.startup_models(self.repository, self.profile.config_name)

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.installation.embedded:
            # Stubs import the model's Python packages from the `python3` first on PATH.
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            libdir = sysconfig.get_config_var("LIBDIR") or ""
            env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        env[PROFILE_ENV] = self.profile.name
        env[ticket.SECRET_ENV] = self.pipeline_secret
        return env

    def start(self) -> "TritonServer":
        # New for every start: only requests that came through request_validator carry it.
        self.pipeline_secret = ticket.new_secret()
        output = open(self.log, "ab") if self.log else None
        # A session of its own: Ctrl-C in a terminal reaches only the launcher, which drains
        # first; Triton's own SIGINT handling would fail requests caught between two steps.
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            stdout=output or None,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 180.0, stopping: Callable[[], bool] = lambda: False) -> bool:
        """True once the server is ready; False if `stopping()` turned true first."""
        url = f"http://{self.host}:{self.http_port}/v2/health/ready"

        def state() -> str | None:
            return "ready" if processes.answering(self.process, url, 2.0) else "stopping" if stopping() else None

        return waiting.until(state, timeout, "tritonserver ready", 0.5) == "ready"

    def stop(self, timeout: float = 40.0) -> int:
        """Drains, then SIGTERM; SIGKILL if the server does not exit in time."""
        if self.process is None:
            return 0
        if self.process.poll() is not None:
            return self._exited(self.process.returncode)
        self.drain()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self._exited(self.process.wait(timeout))
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self._exited(self.process.wait())

    def _exited(self, code: int) -> int:
        """Removes the shared memory the stopped server's model processes left; returns `code`."""
        for region in SHARED_MEMORY.glob(self.shm_prefix + "*"):
            region.unlink(missing_ok=True)
        if self.process is not None:
            board_path(self.process.pid, self.pipeline_secret.encode()).unlink(missing_ok=True)
        return code

    def drain(self, timeout: float = 30.0) -> None:
        """Lets requests in flight finish and refuses new ones (lipsync/drain.py)."""
        address = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        drain.drain(f"{address}:{self.http_port}", self.admin_key, timeout)

    def metrics(self) -> scrape.Scrape:
        """What its metrics port says now."""
        address = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return scrape.scrape(f"{address}:{self.metrics_port}")

    def crashed_stubs(self) -> list[int]:
        """Model processes (python-backend stubs) of this server that died: Triton 24.x neither
        restarts nor reaps them, so they stay behind as zombies, and their models fail."""
        children = psutil.Process(self.running.pid).children()
        return [child.pid for child in children if _status(child) == psutil.STATUS_ZOMBIE]

    def supervise(self, stopping: Callable[[], bool], poll_s: float = 1.0) -> int:
        """Serves until the server exits or `stopping()` turns true (then drains and stops it);
        returns its exit code. Restarts the server whenever one of its model processes has
        died: the restart brings every model back as the repository has it."""
        while not stopping():
            try:
                return self._exited(self.running.wait(poll_s))
            except subprocess.TimeoutExpired:
                pass
            crashed = self.crashed_stubs()
            if crashed:
                print(f"lipsync-server: model process {crashed} died: restarting tritonserver", flush=True)
                # The dead process's model never unloads, and Triton would wait its whole exit
                # timeout for it: once drained, the others are down within seconds.
                self.stop(timeout=CRASHED_STOP_S)
                if self.start().wait_ready(stopping=stopping):
                    print("lipsync-server: ready again", flush=True)
        return self.stop()

    @classmethod
    def around(cls, repository: Path, grpc_port: int, log: Path) -> "TritonServer":
        """A server with gRPC on `grpc_port`, HTTP one below and metrics one above (make demo,
        make web); says where it logs."""
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"starting tritonserver (log: {log})", flush=True)
        return cls(repository, http_port=grpc_port - 1, grpc_port=grpc_port, metrics_port=grpc_port + 1, log=log)

    @classmethod
    def on_free_ports(cls, repository: Path, log: Path | None = None) -> "TritonServer":
        """A server on free loopback ports (tests, benchmarks)."""
        return cls(repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), log=log)

    @property
    def running(self) -> subprocess.Popen:
        if self.process is None:
            raise RuntimeError("tritonserver has not been started")
        return self.process

    def __enter__(self) -> "TritonServer":
        self.start().wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def is_object_storage(repository: str) -> bool:
    return repository.startswith(OBJECT_STORAGE)


class StopSignals:
    """SIGTERM and SIGINT ask the launcher to drain and stop. The handler only stores the
    signal's number: a handler that takes a lock (threading.Event.set) deadlocks when a second
    signal interrupts it, and a burst of signals (a process group's, then a supervisor's) is
    what stopping a server sends."""

    def __init__(self):
        self.received: int | None = None
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._handle)

    def _handle(self, number, frame) -> None:
        self.received = number

    def __call__(self) -> bool:
        return self.received is not None


def serve(
    repository: Path,
    host: str,
    ports: tuple[int, int, int],
    profile: Profile,
    keys: tuple[str | None, str | None],
    new_keys: bool,
) -> int:
    """Serves until Ctrl-C or SIGTERM; returns the exit status (`lipsync-server serve`).
    `keys`: the administrator and inference keys given on the command line, if any."""
    http_port, grpc_port, metrics_port = ports
    admin_key, inference_key = keys
    if new_keys:
        admin_key, inference_key = write_key_file(ADMIN), write_key_file(INFERENCE)
    stopping = StopSignals()
    server = TritonServer(
        repository, host, http_port, grpc_port, metrics_port, profile, admin_key=admin_key, inference_key=inference_key
    )
    server.start()
    if server.wait_ready(stopping=stopping):
        print(
            f"lip-sync server ready: gRPC {host}:{grpc_port}, HTTP {host}:{http_port}, "
            f"repository {repository} (Ctrl-C stops)",
            flush=True,
        )
        print(f"administrator key from {source(ADMIN, keys[0])}: every API but health and inference", flush=True)
        print(f"inference key from {source(INFERENCE, keys[1])}: inference over HTTP", flush=True)
    return server.supervise(stopping)


def _status(process: psutil.Process) -> str:
    try:
        return process.status()
    except psutil.NoSuchProcess:  # reaped meanwhile
        return psutil.STATUS_DEAD
