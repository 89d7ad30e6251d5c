"""`lipsync-server serve` (what `make serve` runs) in a process of its own, on free loopback ports."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from lipsync.client import LipsyncClient
from lipsync_server.launcher.tritonserver import free_port


class Launcher:
    def __init__(
        self,
        repository: Path | None,
        log: Path,
        args: tuple[str, ...] = (),
        env: dict | None = None,
        cwd: Path | None = None,
    ):
        self.repository, self.log, self.args, self.cwd = repository, log, args, cwd
        self.env = {**os.environ, **(env or {})}
        self.ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
        self.process: subprocess.Popen | None = None

    def url(self, protocol: str = "grpc") -> str:
        return f"127.0.0.1:{self.ports[protocol]}"

    def command(self) -> list[str]:
        repository = ["--repository", str(self.repository)] if self.repository else []
        ports = (f"--{name}-port={port}" for name, port in self.ports.items())
        return [sys.executable, "-m", "lipsync_server", "serve", *repository, *ports, *self.args]

    def start(self, wait_for_ensemble: bool = True) -> "Launcher":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd
            )
        if wait_for_ensemble:
            LipsyncClient(self.url()).wait_until_ready(180)
        return self

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(90)
