"""`make perf-analyzer`: a concurrency sweep of the lipsync ensemble with perf_analyzer.

Starts the server (CPU profile) unless --url is given, feeds real speech from
make_perf_input.py, and writes out/perf/perf_analyzer.csv. Equivalent command by hand, against
`make serve` (perf_analyzer reads the model's metadata and config, which the administrator key
guards: lipsync_protocol.keys):

    .venv/bin/perf_analyzer -m lipsync -u 127.0.0.1:8001 -i grpc --input-data out/perf/input.json \\
        -H "triton-grpc-protocol-lipsync-admin-key:$(cat ~/.config/lipsync/admin-key)" \\
        --concurrency-range 1:3 --measurement-mode count_windows --measurement-request-count 4 \\
        -f out/perf/perf_analyzer.csv --verbose-csv
"""

import argparse
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

from lipsync_protocol.keys import ADMIN
from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server's gRPC address (default: start one)")
    parser.add_argument("--concurrency", default="1:3", help="perf_analyzer --concurrency-range")
    parser.add_argument("--requests", type=int, default=4, help="requests per measurement window")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "perf")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    data = args.output / "input.json"
    subprocess.run([sys.executable, str(ROOT / "perf" / "make_perf_input.py"), "--output", str(data)], check=True)
    server = None if args.url else TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "server.log")
    with server or nullcontext():
        url = args.url if server is None else f"127.0.0.1:{server.grpc_port}"
        command = [
            str(Path(sys.executable).parent / "perf_analyzer"),
            "-m",
            "lipsync",
            "-u",
            url,
            "-i",
            "grpc",
            *(f"-H{name}:{value}" for name, value in ADMIN.headers(ADMIN.for_client(url), "grpc").items()),
            "--input-data",
            str(data),
            "--concurrency-range",
            args.concurrency,
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            str(args.requests),
            "--stability-percentage",
            "50",
            "--max-trials",
            "3",
            "-f",
            str(args.output / "perf_analyzer.csv"),
            "--verbose-csv",
        ]
        print(" ".join(part if ADMIN.header not in part else f"-H{ADMIN.header}:..." for part in command), flush=True)
        return subprocess.run(command).returncode


if __name__ == "__main__":
    sys.exit(main())
