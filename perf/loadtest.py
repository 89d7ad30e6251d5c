"""`make loadtest`: the largest number of live streams the server keeps up with.

Starts the server (CPU profile, loopback only), then runs Locust headless with 1, 2, 4, ...
live streams (perf/locustfile.py), each level for a bounded time, until a level has a stream
that falls behind. Writes out/bench/loadtest.json and, when out/bench/report.json exists,
sets its live_streams_kept_up.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]


def run_level(url: str, streams: int, seconds: int, folder: Path) -> dict:
    result = folder / f"locust_{streams}.json"
    command = [
        str(Path(sys.executable).parent / "locust"),
        "-f",
        str(ROOT / "perf" / "locustfile.py"),
        "--headless",
        "--users",
        str(streams),
        "--spawn-rate",
        str(streams),
        "--run-time",
        f"{seconds}s",
        "--host",
        url,
        "--only-summary",
        "--csv",
        str(folder / f"locust_{streams}"),
    ]
    process = subprocess.Popen(command, env={**os.environ, "LIPSYNC_LOCUST_RESULT": str(result)})
    try:
        process.wait(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        process.kill()  # a hung load generator must not hang the benchmark
        process.wait()
        raise RuntimeError(f"locust did not finish its {seconds} s run within {seconds + 60} s") from None
    return json.loads(result.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-streams", type=int, default=8)
    parser.add_argument("--seconds", type=int, default=30, help="per level")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    levels, kept_up = [], 0
    with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "loadtest-server.log") as server:
        streams = 1
        while streams <= args.max_streams:
            level = run_level(f"127.0.0.1:{server.http_port}", streams, args.seconds, args.output)
            all_kept_up = len(level["streams"]) == streams and all(s["kept_up"] for s in level["streams"])
            levels.append({"streams": streams, "all_kept_up": all_kept_up, **level})
            print(
                f"{streams} live streams: " + ", ".join(f"p99 {s['p99_ms']:.0f} ms" for s in level["streams"]),
                flush=True,
            )
            if not all_kept_up:
                break
            kept_up, streams = streams, streams * 2
    summary = {"live_streams_kept_up": kept_up, "chunk_ms": 200, "levels": levels}
    (args.output / "loadtest.json").write_text(json.dumps(summary, indent=2))
    report = args.output / "report.json"
    if report.exists():
        figures = json.loads(report.read_text())
        figures["live_streams_kept_up"] = kept_up
        report.write_text(json.dumps(figures, indent=2))
    print(f"live streams kept up: {kept_up}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
