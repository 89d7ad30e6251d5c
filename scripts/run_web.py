"""`make web`: serve the repository and the web page on loopback until Ctrl-C.

Starts tritonserver (CPU profile, gRPC 8001) with the launcher, then the gateway (`lipsync web`,
http://127.0.0.1:8080/) in this process; Ctrl-C stops the gateway, then drains and stops the
server.
"""

import argparse
import sys
from pathlib import Path

from lipsync import cli
from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--port", type=int, default=8080, help="the page's port")
    args = parser.parse_args()
    with TritonServer.around(ROOT / "model_repository", args.grpc_port, ROOT / "out" / "web-server.log"):
        return cli.main(["--url", f"127.0.0.1:{args.grpc_port}", "web", "--port", str(args.port)])


if __name__ == "__main__":
    sys.exit(main())
