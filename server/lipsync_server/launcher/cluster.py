"""Replicas behind a load balancer on this machine, loopback only: N tritonservers of the CPU
profile, nginx in front of them (nginx.py) and Prometheus scraping them (prometheus.py). What a
Kubernetes Service, its readiness probes and a Prometheus operator do on a cluster, with the
same images' parts; `lipsync-server cluster` (`make cluster`) runs it until Ctrl-C.

nginx sends requests only to replicas that this launcher has seen ready: every `poll_s` it asks
each replica for /v2/health/ready and the pipeline's /v2/models/lipsync/ready (a draining or
stopping Triton still accepts connections, and a server without its ensemble is still "ready"),
and reloads nginx when one changes.
"""

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lipsync_protocol.ensemble import ENSEMBLE
from lipsync_protocol.keys import ADMIN, INFERENCE

from . import nginx, processes, prometheus
from .keys import for_server
from .nginx import Nginx
from .prometheus import Prometheus
from .tritonserver import StopSignals, TritonServer, free_port


def ready(server: TritonServer, timeout: float = 0.5) -> bool:
    """Whether a replica serves the pipeline now."""
    base = f"http://{server.host}:{server.http_port}/v2"
    return all(
        processes.answering(None, base + path, timeout) for path in ("/health/ready", f"/models/{ENSEMBLE}/ready")
    )


class Cluster:
    def __init__(
        self,
        repository: Path,
        work: Path,
        replicas: int = 2,
        host: str = "127.0.0.1",
        grpc_port: int = 8001,
        http_port: int = 8000,
        prometheus_port: int = 9090,
        admin_key: str | None = None,
        poll_s: float = 0.5,
    ):
        self.work = work
        self.poll_s = poll_s
        admin, inference = for_server(ADMIN, admin_key), for_server(INFERENCE)
        self.replicas = [
            TritonServer(
                repository,
                host,
                free_port(),
                free_port(),
                free_port(),
                log=work / f"replica-{i + 1}.log",
                admin_key=admin,
                inference_key=inference,
            )
            for i in range(replicas)
        ]
        self.nginx = Nginx(work, host, grpc_port, http_port)
        self.prometheus = Prometheus(work, host, prometheus_port)
        self.up = [False] * replicas
        self.changes: list[tuple[float, str, bool]] = []  # (time.monotonic(), pod, ready) as nginx was told
        self._stop = threading.Event()
        self._checker = threading.Thread(target=self._check, name="replica readiness", daemon=True)

    @property
    def grpc_url(self) -> str:
        return f"{self.nginx.host}:{self.nginx.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"{self.nginx.host}:{self.nginx.http_port}"

    def pod(self, index: int) -> str:
        return f"replica-{index + 1}"

    def start(self, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Starts every part; True once all replicas are ready behind nginx."""
        nginx.executable(), prometheus.executable()  # missing tools fail before anything starts
        self.work.mkdir(parents=True, exist_ok=True)
        for replica in self.replicas:
            replica.start()
        self.prometheus.start({self.pod(i): f"{r.host}:{r.metrics_port}" for i, r in enumerate(self.replicas)})
        for replica in self.replicas:
            if not replica.wait_ready(stopping=stopping):
                return False
        self.up = [ready(replica) for replica in self.replicas]
        self.nginx.start(
            [f"{r.host}:{r.grpc_port}" for r in self.replicas],
            [f"{r.host}:{r.http_port}" for r in self.replicas],
            self.up,
        )
        self._checker.start()
        return True

    def kill(self, index: int) -> None:
        """Kills a replica and its model processes at once, as a crash or a lost node would."""
        replica = self.replicas[index]
        os.killpg(replica.running.pid, signal.SIGKILL)
        replica.running.wait()
        replica.stop()  # it has exited: this removes the shared memory it left

    def stop(self) -> None:
        self._stop.set()
        if self._checker.is_alive():
            self._checker.join()
        self.nginx.stop()
        for replica in self.replicas:
            replica.stop()
        self.prometheus.stop()

    def _check(self) -> None:
        while not self._stop.wait(self.poll_s):
            now = [ready(replica) for replica in self.replicas]
            if now == self.up:
                continue
            self.nginx.mark(now)
            moment = time.monotonic()
            for i, (before, after) in enumerate(zip(self.up, now, strict=True)):
                if before != after:
                    self.changes.append((moment, self.pod(i), after))
                    print(f"lipsync cluster: {self.pod(i)} {'ready' if after else 'out of rotation'}", flush=True)
            self.up = now

    @classmethod
    def on_free_ports(cls, repository: Path, work: Path) -> "Cluster":
        """Two replicas, nginx and Prometheus on free loopback ports (tests, benchmarks)."""
        return cls(repository, work, grpc_port=free_port(), http_port=free_port(), prometheus_port=free_port())

    def __enter__(self) -> "Cluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run(repository: Path, work: Path, replicas: int, grpc_port: int, http_port: int, prometheus_port: int) -> int:
    """Runs a cluster until Ctrl-C or SIGTERM (`lipsync-server cluster`); returns the exit status."""
    stopping = StopSignals()
    cluster = Cluster(
        repository, work, replicas, grpc_port=grpc_port, http_port=http_port, prometheus_port=prometheus_port
    )
    try:
        if cluster.start(stopping):
            print(
                f"lip-sync cluster ready: {replicas} replicas behind nginx at gRPC {cluster.grpc_url}, "
                f"HTTP {cluster.http_url}; Prometheus {cluster.prometheus.url}; logs in {work} (Ctrl-C stops)",
                flush=True,
            )
            while not stopping():
                time.sleep(0.5)
    finally:
        cluster.stop()
    return 0
