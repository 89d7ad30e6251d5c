"""`make overload`: twice the sustainable request rate for 60 s, open loop.

Starts the server (CPU profile, loopback), measures the service time of one 1 s request alone
and the sustainable rate (back-to-back at concurrency 2), then sends requests at twice that rate
whatever the server does, as users would, each accepting at most --max-wait-s of queueing
(MAX_WAIT_MS). Every request ends in one of: served (all its frames), rejected (UNAVAILABLE:
admission; the client may retry, behind a load balancer on another replica), or lost (any other
error or a wrong frame count). Passes when nothing is lost and the served p99 is within the
bound plus one request's own service time. Writes out/bench/overload.json.

With --cluster URL it drives a running `make cluster` through its nginx instead, and adds what the
cluster's Prometheus saw of it: busy refusals and the highest expected wait, per replica.
"""

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import measure
import numpy as np
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic
from lipsync_server.launcher import prometheus
from lipsync_server.launcher.tritonserver import TritonServer

ROOT = Path(__file__).resolve().parents[1]
AUDIO = voice.speech(1.0, framing.SAMPLE_RATE, seed=3)
FRAMES = framing.frame_count(len(AUDIO))


def sustainable_rate(client: LipsyncClient, seconds: float) -> float:
    """Requests/s the server completes with two requests always waiting."""
    done, stop = [], time.monotonic() + seconds

    def worker():
        while time.monotonic() < stop:
            client.render(AUDIO, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)
            done.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(done) / (max(done) - start)


def service_time(client: LipsyncClient) -> float:
    """Seconds one request takes on an idle server (median of 3, after one to warm up)."""
    client.render(AUDIO, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)
    seconds = []
    for _ in range(3):
        started = time.monotonic()
        client.render(AUDIO, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION)
        seconds.append(time.monotonic() - started)
    return float(np.median(seconds))


def one(client: LipsyncClient, max_wait_s: float) -> tuple[str, float, str]:
    started = time.monotonic()
    try:
        frames = client.render(AUDIO, framing.SAMPLE_RATE, "demo", synthetic.BENCHMARK_VERSION, max_wait_s=max_wait_s)
        outcome, detail = ("served", "") if len(frames) == FRAMES else ("lost", f"{len(frames)} frames")
    except InferenceServerException as error:
        unavailable = str(error.status()) in ("StatusCode.UNAVAILABLE", "503")
        outcome, detail = ("rejected" if unavailable else "lost"), error.message()
    return outcome, time.monotonic() - started, detail


def drive(client: LipsyncClient, args) -> tuple[float, float, float, list[tuple[str, float, str]]]:
    """(service time alone, sustainable rate, offered rate, each request's outcome)."""
    alone = service_time(client)
    rate = sustainable_rate(client, 20.0)
    offered = args.factor * rate
    print(
        f"sustainable {rate:.3f} requests/s ({rate * FRAMES:.1f} frames/s); "
        f"offering {offered:.3f} for {args.seconds:.0f} s",
        flush=True,
    )
    with ThreadPoolExecutor(256) as pool:
        pending, start = [], time.monotonic()
        while (elapsed := time.monotonic() - start) < args.seconds:
            # MAX_WAIT_MS is when the frames must be done: the queueing accepted, then its own time.
            pending.append(pool.submit(one, client, args.max_wait_s + alone))
            time.sleep(max(0.0, len(pending) / offered - elapsed))
        return alone, rate, offered, [p.result() for p in pending]


def prometheus_view(url: str, seconds: float) -> dict[str, dict[str, float]]:
    """Per replica, over the last `seconds`: busy refusals and the highest expected wait, as the
    cluster's Prometheus recorded them (after two more scrapes)."""
    time.sleep(2.5)
    window = f"{int(seconds) + 5}s"
    return {
        "busy_refusals": prometheus.by_pod(
            url, f'sum by (pod) (increase(lipsync_requests_refused_total{{reason="busy"}}[{window}]))'
        ),
        "highest_expected_wait_s": prometheus.by_pod(
            url, f"max by (pod) (max_over_time(lipsync_expected_wait_seconds[{window}]))"
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of the overload")
    parser.add_argument("--factor", type=float, default=2.0, help="offered rate / sustainable rate")
    parser.add_argument(
        "--max-wait-s",
        type=float,
        default=1.0,
        help="each request's queueing bound (MAX_WAIT_MS); 1 s: a live segment's",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    parser.add_argument("--cluster", metavar="HOST:PORT", help="a running `make cluster`'s gRPC address")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="that cluster's Prometheus")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    if args.cluster:
        started = time.time()
        alone, rate, offered, results = drive(LipsyncClient(args.cluster), args)
        seen = prometheus_view(args.prometheus, time.time() - started)
    else:
        with TritonServer.on_free_ports(ROOT / "model_repository", log=args.output / "overload-server.log") as server:
            alone, rate, offered, results = drive(LipsyncClient(f"127.0.0.1:{server.grpc_port}"), args)
        seen = {}
    outcomes = {kind: [r for r in results if r[0] == kind] for kind in ("served", "rejected", "lost")}
    seconds = {kind: [r[1] for r in rows] for kind, rows in outcomes.items()}
    bound = args.max_wait_s + alone
    served_p99 = float(np.percentile(seconds["served"], 99)) if seconds["served"] else 0.0
    report = {
        "cpu": measure.cpu(),
        "frames_per_request": FRAMES,
        "service_time_alone_s": alone,
        "max_wait_s": args.max_wait_s,
        "served_p99_bound_s": bound,
        "served_p99_within_bound": served_p99 <= bound,
        "sustainable_requests_per_s": rate,
        "offered_requests_per_s": offered,
        "duration_s": args.seconds,
        "requests": len(results),
        **{kind: len(rows) for kind, rows in outcomes.items()},
        **{
            f"{kind}_latency_s": {"p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)), "max": max(v)}
            for kind, v in seconds.items()
            if v
        },
        "lost_details": sorted({r[2] for r in outcomes["lost"]}),
        "rejection_message": outcomes["rejected"][0][2] if outcomes["rejected"] else None,
        **({"prometheus": seen} if seen else {}),
    }
    (args.output / "overload.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 1 if outcomes["lost"] or served_p99 > bound else 0


if __name__ == "__main__":
    sys.exit(main())
