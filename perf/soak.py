"""`make soak`: a bounded soak of the CPU profile, loopback only.

Sends --requests requests (default 1000) at concurrency 4, over gRPC and HTTP in turn: short
clips of varying length, start frame and avatar version, with every tenth request a bad one
(NaN audio, an unknown avatar, a zero sample rate) that must be refused with INVALID_ARG.
Samples the server's RSS (tritonserver and its stubs) and /dev/shm every 100 requests.
Passes when no request failed unexpectedly, RSS grew at most --max-growth-mb from request 100
to the end, and /dev/shm is back to its size before the server once it stops.
Writes out/bench/soak.json.
"""

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import measure
import numpy as np
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.calibration import voice
from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]
SPEECH = voice.speech(1.0, framing.SAMPLE_RATE, seed=5)
BAD: list[dict[str, Any]] = [dict(audio=np.full(4000, np.nan, np.float32)), dict(avatar="nobody"), dict(rate=0)]


def one(clients: dict, index: int) -> str:
    """'ok', or what went wrong."""
    client = clients["grpc" if index % 2 else "http"]
    rng = np.random.default_rng(index)
    request: dict[str, Any] = dict(
        audio=SPEECH[: int(rng.integers(framing.MIN_SAMPLES, 4800))], rate=framing.SAMPLE_RATE, avatar="demo"
    )
    if index % 10 == 9:
        request.update(BAD[index // 10 % len(BAD)])
    try:
        frames = client.render(
            request["audio"],
            request["rate"],
            request["avatar"],
            version=int(rng.integers(1, 3)),
            start_frame=int(rng.integers(0, 1000)),
        )
    except InferenceServerException as error:
        refused = index % 10 == 9 and str(error.status()) in ("StatusCode.INVALID_ARGUMENT", "400")
        return "ok" if refused else f"{error.status()}: {error.message()}"
    expected = framing.frame_count(len(request["audio"]))
    return "ok" if index % 10 != 9 and len(frames) == expected else f"{len(frames)} frames, expected {expected}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-growth-mb", type=float, default=20.0)
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    shm_before = measure.shm_mb()
    samples, failures, start = [], [], time.monotonic()
    with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "soak-server.log") as server:
        clients = {
            "grpc": LipsyncClient(f"127.0.0.1:{server.grpc_port}"),
            "http": LipsyncClient(f"127.0.0.1:{server.http_port}", "http"),
        }
        with ThreadPoolExecutor(args.concurrency) as pool:
            for begin in range(0, args.requests, 100):
                outcomes = list(pool.map(lambda i: one(clients, i), range(begin, min(begin + 100, args.requests))))
                failures += [o for o in outcomes if o != "ok"]
                samples.append(
                    {
                        "requests": begin + len(outcomes),
                        "rss_mb": measure.server_rss_mb(server.running.pid),
                        "shm_mb": measure.shm_mb(),
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
    time.sleep(1)
    report = {
        "requests": args.requests,
        "bad_requests_refused": args.requests // 10,
        "failed": len(failures),
        "failures": sorted(set(failures))[:20],
        "minutes": (time.monotonic() - start) / 60,
        "rss_growth_mb_100_to_end": samples[-1]["rss_mb"] - samples[0]["rss_mb"],
        "shm_mb_before_server": shm_before,
        "shm_mb_after_server": measure.shm_mb(),
        "samples": samples,
    }
    (args.output / "soak.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))
    passed = (
        not failures
        and report["rss_growth_mb_100_to_end"] <= args.max_growth_mb
        and report["shm_mb_after_server"] <= shm_before
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
