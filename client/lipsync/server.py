"""Starts the real `tritonserver` on this machine: the binary shipped in the nvidia-pytriton wheel.

`python -m lipsync.server` (what `make serve` runs) serves the model repository with the CPU
profile and explicit model control on 127.0.0.1 until Ctrl-C. With an administrator key
(--admin-key or LIPSYNC_ADMIN_KEY) the model-repository API needs the key's header; binding
beyond loopback requires one. Tests use TritonServer directly.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.request
from pathlib import Path

import pytriton

from . import drain, processes
from .client import ADMIN_KEY_HEADER

TRITON_HOME = Path(pytriton.__file__).parent / "tritonserver"
ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _python_backend() -> Path:
    """The wheel's python backend, with the stub for this interpreter in place."""
    backend = TRITON_HOME / "backends" / "python"
    stub = TRITON_HOME / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}" / "triton_python_backend_stub"
    target = backend / stub.name
    if not target.exists():
        shutil.copy2(stub, target)
    return backend


def free_port() -> int:
    """A free TCP port on the loopback interface (for servers started by tests and benchmarks)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TritonServer:
    def __init__(
        self,
        repository: Path = ROOT / "model_repository",
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        config_name: str = "cpu",
        log: Path | None = None,
        extra_args: tuple[str, ...] = (),
        admin_key: str | None = None,
    ):
        self.repository = Path(repository)
        self.host, self.http_port, self.grpc_port, self.metrics_port = host, http_port, grpc_port, metrics_port
        self.config_name = config_name
        self.log = log
        self.extra_args = extra_args
        self.admin_key = admin_key
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            str(TRITON_HOME / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--model-config-name={self.config_name}",
            "--model-control-mode=explicit",
            "--load-model=*",
            f"--backend-directory={_python_backend().parent}",
            f"--cache-directory={TRITON_HOME / 'caches'}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            "--exit-timeout-secs=30",
            # Readiness is the server's and its ensembles' (the client checks `lipsync`): one
            # avatar that failed to load must not take the whole server out of rotation.
            "--strict-readiness=false",
            # Faces and frames cross process boundaries: start each stub's region big enough.
            "--backend-config=python,shm-default-byte-size=16777216",
            "--backend-config=python,shm-growth-byte-size=33554432",
            *self._restrictions(),
            *self.extra_args,
        ]

    def _restrictions(self) -> list[str]:
        if not self.admin_key:
            return []
        rule = f"model-repository:{ADMIN_KEY_HEADER}={self.admin_key}"
        return [f"--grpc-restricted-protocol={rule}", f"--http-restricted-api={rule}"]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # Stubs import the model's Python packages from the `python3` first on PATH.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def start(self) -> "TritonServer":
        output = open(self.log, "ab") if self.log else None
        # A session of its own: Ctrl-C in a terminal reaches only the launcher, which drains
        # first; Triton's own SIGINT handling would fail requests caught between two steps.
        self.process = subprocess.Popen(
            self.command(), env=self.environment(), stdout=output or None, stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.host}:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode} before it was ready")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"tritonserver was not ready within {timeout:.0f} s")

    def stop(self, timeout: float = 40.0) -> int:
        """Drains, then SIGTERM; SIGKILL if the server does not exit in time."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.drain()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def drain(self, timeout: float = 30.0) -> None:
        """Lets requests in flight finish and refuses new ones (lipsync/drain.py)."""
        address = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        drain.drain(f"{address}:{self.http_port}", self.admin_key, timeout)

    def crashed_stubs(self) -> list[int]:
        """Model processes (python-backend stubs) of this server that died: Triton 24.x neither
        restarts nor reaps them, so they stay behind as zombies, and their models fail."""
        return [pid for pid, state in processes.children(self.process.pid).items() if state == "Z"]

    def supervise(self, stop: threading.Event, poll_s: float = 1.0) -> int:
        """Serves until the server exits or `stop` is set (then drains and stops it); returns its
        exit code. Restarts the server whenever one of its model processes has died: the
        restart brings every model back as the repository has it."""
        while True:
            try:
                return self.process.wait(poll_s)
            except subprocess.TimeoutExpired:
                pass
            if stop.is_set():
                return self.stop()
            crashed = self.crashed_stubs()
            if crashed:
                print(f"lipsync.server: model process {crashed} died: restarting tritonserver", flush=True)
                self.stop()
                self.start().wait_ready()
                print("lipsync.server: ready again", flush=True)

    def __enter__(self) -> "TritonServer":
        self.start().wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the lip-sync model repository with tritonserver.")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--profile", default="cpu", help="model config name: configs/<profile>.pbtxt")
    parser.add_argument("--admin-key", default=os.environ.get("LIPSYNC_ADMIN_KEY"),
                        help=f"require this key in the {ADMIN_KEY_HEADER!r} header for the model-repository API "
                             "(list, load, unload); default: $LIPSYNC_ADMIN_KEY")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK and not args.admin_key:
        parser.error(f"--host {args.host} exposes the server beyond this machine: set --admin-key (or "
                     "LIPSYNC_ADMIN_KEY) so that loading and unloading avatars needs the key")
    server = TritonServer(args.repository, args.host, args.http_port, args.grpc_port, args.metrics_port, args.profile,
                          admin_key=args.admin_key)
    server.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # drain and stop, as Ctrl-C does
    try:
        server.wait_ready()
        print(f"lip-sync server ready: gRPC {args.host}:{args.grpc_port}, HTTP {args.host}:{args.http_port} (Ctrl-C stops)", flush=True)
        return server.supervise(stop)
    except KeyboardInterrupt:
        return server.stop()


if __name__ == "__main__":
    sys.exit(main())
