"""`make agent`: serve the repository and the example voice agent on loopback until Ctrl-C.

Starts tritonserver (CPU profile, gRPC 8001) with the launcher, then the agent (`lipsync agent`,
http://127.0.0.1:8090/) in this process; Ctrl-C stops the agent, then drains and stops the
server. Open the page, press Connect, type what the avatar says, and speak over it.
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
    parser.add_argument("--port", type=int, default=8090, help="the page's port")
    parser.add_argument("--echo", action="store_true", help="the agent also repeats what you say")
    args = parser.parse_args()
    command = ["--url", f"127.0.0.1:{args.grpc_port}", "agent", "--port", str(args.port)]
    with TritonServer.around(ROOT / "model_repository", args.grpc_port, ROOT / "out" / "agent-server.log"):
        return cli.main(command + (["--echo"] if args.echo else []))


if __name__ == "__main__":
    sys.exit(main())
