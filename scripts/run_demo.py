"""`make demo`: serve the repository, render the bundled sample with the CLI, stop the server."""

import argparse
import sys
from pathlib import Path

from lipsync import cli
from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--audio", type=Path, default=ROOT / "assets" / "sample.wav")
    parser.add_argument("--avatar", default="demo")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "demo.mp4")
    parser.add_argument("--grpc-port", type=int, default=8001)
    args = parser.parse_args()
    with TritonServer.around(ROOT / "model_repository", args.grpc_port, ROOT / "out" / "demo-server.log"):
        return cli.main(
            [
                "--url",
                f"127.0.0.1:{args.grpc_port}",
                "render",
                str(args.audio),
                "--avatar",
                args.avatar,
                "-o",
                str(args.output),
            ]
        )


if __name__ == "__main__":
    sys.exit(main())
