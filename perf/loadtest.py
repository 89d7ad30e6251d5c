"""`make loadtest`: the largest number of live streams the server keeps up with, for the demo
avatar's reference-size version and for its trained (quarter-width) version.

Starts the server (CPU profile, loopback only), then runs Locust headless with 1, 2, 4, ...
live streams (perf/locustfile.py) of one version, each level for a bounded time, until a level
has a stream that falls behind (or none keeps up), then the same for the other version. Writes
out/bench/loadtest.json and, when out/bench/report.json exists, sets its live_streams_kept_up
and writes its report again.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import report

from lipsync_server.demo import synthetic
from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]


def run_level(url: str, version: int, streams: int, seconds: int, folder: Path) -> dict:
    result = folder / f"locust_v{version}_{streams}.json"
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
        str(folder / f"locust_v{version}_{streams}"),
    ]
    env = {**os.environ, "LIPSYNC_LOCUST_RESULT": str(result), "LIPSYNC_LOCUST_VERSION": str(version)}
    process = subprocess.Popen(command, env=env)
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
    kept_up: dict[str, int] = {}
    levels: dict[str, list[dict]] = {}
    with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "loadtest-server.log") as server:
        url = f"127.0.0.1:{server.http_port}"
        for size, version in VERSIONS.items():
            kept_up[size], levels[size] = sweep(url, version, args.max_streams, args.seconds, args.output)
            print(f"{size} (version {version}): live streams kept up: {kept_up[size]}", flush=True)
    summary = {"live_streams_kept_up": kept_up, "chunk_ms": 200, "levels": levels}
    (args.output / "loadtest.json").write_text(json.dumps(summary, indent=2))
    figures_file = args.output / "report.json"
    if figures_file.exists():
        figures = json.loads(figures_file.read_text())
        figures["live_streams_kept_up"] = kept_up
        report.write(figures, args.output)
    return 0


VERSIONS = {"reference_size": synthetic.BENCHMARK_VERSION, "trained": synthetic.TRAINED_VERSION}


def sweep(url: str, version: int, max_streams: int, seconds: int, folder: Path) -> tuple[int, list[dict]]:
    """1, 2, 4, ... streams of `version` until one falls behind: (streams kept up, levels)."""
    levels, kept_up, streams = [], 0, 1
    while streams <= max_streams:
        level = run_level(url, version, streams, seconds, folder)
        all_kept_up = len(level["streams"]) == streams and all(s["kept_up"] for s in level["streams"])
        levels.append({"streams": streams, "all_kept_up": all_kept_up, **level})
        print(
            f"version {version}, {streams} live streams: "
            + ", ".join(f"p99 {s['p99_ms']:.0f} ms" for s in level["streams"]),
            flush=True,
        )
        if not all_kept_up:
            break
        kept_up, streams = streams, streams * 2
    return kept_up, levels


if __name__ == "__main__":
    sys.exit(main())
