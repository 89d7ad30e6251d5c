"""nginx in front of the replicas: gRPC over HTTP/2 and HTTP, both round robin, loopback only.

Segments carry their audio context, so any replica can serve any request: no sticky sessions.
Open-source nginx checks upstreams only passively (a refused connection); the upstream list is
rewritten by the cluster's own readiness checks (cluster.py) and reloaded with SIGHUP, which lets
the old workers finish the requests they hold.
"""

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import psutil

from lipsync_protocol import waiting

from . import processes

CONFIG = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format upstream '$time_iso8601 $request_uri $status $request_time "$upstream_addr"';
    access_log {work}/nginx-access.log upstream;
    # nginx checks its temporary paths at start: keep them in the work folder.
    client_body_temp_path {work}/tmp/client_body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
    # A request is up to 60 s of float audio (3.8 MB); keep bodies in memory.
    client_max_body_size 64m;
    client_body_buffer_size 8m;
    include {work}/upstreams.conf;

    server {{
        listen {host}:{grpc_port} http2;
        location / {{
            grpc_pass grpc://lipsync_grpc;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }}
    }}
    server {{
        listen {host}:{http_port};
        location / {{
            proxy_pass http://lipsync_http;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 300s;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


def executable() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError("nginx not found: `make tools` installs it (apt-get install nginx-light)")
    return found


def upstreams(grpc: list[str], http: list[str], up: list[bool]) -> str:
    """The upstream blocks, replicas that are not ready marked `down`."""

    def block(name: str, addresses: list[str]) -> str:
        servers = "".join(
            f"    server {address}{'' if ready else ' down'} max_fails=1 fail_timeout=2s;\n"
            for address, ready in zip(addresses, up, strict=True)
        )
        return f"upstream {name} {{\n{servers}    keepalive 16;\n}}\n"

    return block("lipsync_grpc", grpc) + block("lipsync_http", http)


class Nginx:
    def __init__(self, work: Path, host: str, grpc_port: int, http_port: int):
        self.work, self.host, self.grpc_port, self.http_port = work, host, grpc_port, http_port
        self.process: subprocess.Popen | None = None

    def start(self, grpc: list[str], http: list[str], up: list[bool]) -> None:
        self.grpc, self.http = grpc, http
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.work / "tmp" / temp).mkdir(parents=True, exist_ok=True)
        config = self.work / "nginx.conf"
        config.write_text(
            CONFIG.format(work=self.work, host=self.host, grpc_port=self.grpc_port, http_port=self.http_port)
        )
        (self.work / "upstreams.conf").write_text(upstreams(grpc, http, up))
        (self.work / "nginx-access.log").write_text("")  # this run's requests only
        binary = executable()
        check = subprocess.run([binary, "-t", "-q", "-e", "stderr", "-c", str(config)], capture_output=True, text=True)
        if check.returncode:
            raise RuntimeError(f"nginx refused its configuration: {check.stderr.strip()}")
        self.process = subprocess.Popen([binary, "-e", str(self.work / "nginx-error.log"), "-c", str(config)])
        self._wait_listening()

    def mark(self, up: list[bool], timeout: float = 5.0) -> None:
        """Rewrites the upstreams with these replicas up and the rest down; reloads, and returns
        once the workers with the old list have gone (they stop accepting connections first, but
        not at once), or after `timeout` if one still finishes a long request."""
        (self.work / "upstreams.conf").write_text(upstreams(self.grpc, self.http, up))
        if not self.process or self.process.poll() is not None:
            return
        master = psutil.Process(self.process.pid)
        old = master.children()
        self.process.send_signal(signal.SIGHUP)
        psutil.wait_procs(old, timeout=timeout)

    def stop(self) -> None:
        processes.stop(self.process, signal.SIGQUIT)  # graceful: workers finish their requests

    def _wait_listening(self, timeout: float = 10.0) -> None:
        waiting.until(self._listening, timeout, f"nginx listening on {self.host}:{self.grpc_port}")

    def _listening(self) -> bool:
        if self.process and self.process.poll() is not None:
            log = (self.work / "nginx-error.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"nginx exited with code {self.process.returncode}: {log}")
        try:
            socket.create_connection((self.host, self.grpc_port), timeout=0.5).close()
            return True
        except OSError:
            return False
