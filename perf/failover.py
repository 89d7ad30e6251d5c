"""`make failover`: a live stream through two replicas behind nginx while one is killed.

Starts `lipsync-server cluster`'s parts (two CPU replicas on loopback, nginx, Prometheus),
renders the clip on one replica alone for reference, then streams it through nginx in 200 ms
chunks and kills a replica (SIGKILL, with its model processes) once a third of the frames have
arrived. Reports: frames lost or different (must be 0), segments per replica (nginx's access
log), segments the client retried, when nginx took the dead replica out, the longest stall
between two frames, and Prometheus's view (requests and the expected wait per replica). Writes
out/failover/report.json and report.md. tests/test_cluster.py runs the same drill.
"""

import argparse
import json
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import measure
import numpy as np

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.calibration import voice
from lipsync_server.launcher.cluster import Cluster

ROOT = Path(__file__).resolve().parents[1]
CHUNK_SECONDS = 0.2
INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Drill:
    frames: int
    lost: int  # frames missing or not identical to the single-server render
    killed: str
    segments_per_replica: dict[str, int]
    failed_segments_per_replica: dict[str, int]
    segments_retried: int
    taken_out_after_s: float | None  # from the kill until nginx was told the replica is down
    longest_stall_s: float  # the longest time between two frames, kill included
    stream_s: float
    prometheus: dict[str, dict[str, float]] = field(default_factory=dict)


def chunks(audio: np.ndarray):
    step = round(CHUNK_SECONDS * framing.SAMPLE_RATE)
    for begin in range(0, len(audio), step):
        yield audio[begin : begin + step]


def drill(cluster: Cluster, audio: np.ndarray, avatar: str = "demo", victim: int = 1) -> Drill:
    """Streams `audio` through the cluster's nginx, killing replica `victim` a third of the way."""
    alone = LipsyncClient(f"{cluster.replicas[0].host}:{cluster.replicas[0].grpc_port}")
    reference = alone.render(audio, framing.SAMPLE_RATE, avatar)
    client = LipsyncClient(cluster.grpc_url)
    frames, arrivals, killed_at = [], [], [0.0]

    def kill():
        killed_at[0] = time.monotonic()
        cluster.kill(victim)

    killer = threading.Thread(target=kill)
    started = time.monotonic()
    for jpeg in client.stream(chunks(audio), framing.SAMPLE_RATE, avatar):
        frames.append(jpeg)
        arrivals.append(time.monotonic())
        if len(frames) == len(reference) // 3:
            killer.start()
    stream_s = time.monotonic() - started
    killer.join()
    lost = abs(len(frames) - len(reference)) + sum(a != b for a, b in zip(frames, reference, strict=False))
    pod = cluster.pod(victim)
    taken_out = [moment for moment, name, up in cluster.changes if name == pod and not up]
    served, failed = segments(cluster)
    gaps = np.diff([started, *arrivals])
    return Drill(
        frames=len(reference),
        lost=lost,
        killed=pod,
        segments_per_replica=served,
        failed_segments_per_replica=failed,
        segments_retried=client.segments_retried,
        taken_out_after_s=taken_out[0] - killed_at[0] if taken_out else None,
        longest_stall_s=float(gaps.max()),
        stream_s=stream_s,
    )


def segments(cluster: Cluster) -> tuple[dict[str, int], dict[str, int]]:
    """Inference requests per replica from nginx's access log: answered, and failed at nginx."""
    pods = {f"{r.host}:{r.grpc_port}": cluster.pod(i) for i, r in enumerate(cluster.replicas)}
    served: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    for line in (cluster.work / "nginx-access.log").read_text().splitlines():
        _, path, status, _, upstream = line.split(" ", 4)
        if path != INFER_PATH:
            continue
        # A request nginx passed on after a failed connection lists every upstream it tried.
        tried = [address.strip() for address in upstream.strip('"').split(",")]
        for address in tried[:-1]:
            failed[pods.get(address, address)] += 1
        (served if status == "200" else failed)[pods.get(tried[-1], tried[-1])] += 1
    return dict(served), dict(failed)


def prometheus_view(cluster: Cluster) -> dict[str, dict[str, float]]:
    """Per replica, over the run: requests served by the pipeline, and the chart's autoscaling
    metric (the expected wait, 1 minute average) at its highest."""
    time.sleep(2.5)  # two more scrapes, and the rules evaluated on them
    return {
        "lipsync_requests": cluster.prometheus.by_pod(
            'max_over_time(nv_inference_request_success{model="lipsync"}[10m])'
        ),
        "max_expected_wait_s": cluster.prometheus.by_pod("max_over_time(lipsync:expected_wait_seconds:avg1m[10m])"),
    }


def markdown(result: Drill, seconds: float, cpu: dict) -> str:
    rows = [
        ("frames in the stream", result.frames),
        ("frames lost or different", result.lost),
        ("replica killed", f"{result.killed}, a third of the way in"),
        ("segments per replica (answered)", result.segments_per_replica),
        ("segments failed at nginx per replica", result.failed_segments_per_replica),
        ("segments the client retried", result.segments_retried),
        ("kill to out of nginx's rotation", f"{result.taken_out_after_s:.2f} s" if result.taken_out_after_s else "-"),
        ("longest stall between two frames", f"{result.longest_stall_s:.2f} s"),
        ("whole stream", f"{result.stream_s:.1f} s for {seconds:.0f} s of audio"),
        (
            "Prometheus: pipeline requests per replica",
            {pod: int(n) for pod, n in sorted(result.prometheus.get("lipsync_requests", {}).items())},
        ),
        (
            "Prometheus: highest expected wait, 1 min average",
            {
                pod: f"{seconds * 1000:.0f} ms"
                for pod, seconds in sorted(result.prometheus.get("max_expected_wait_s", {}).items())
            },
        ),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return (
        f"# Failover drill, {time.strftime('%Y-%m-%d')}\n\n{cpu['model']}, {cpu['cores']} cores "
        f"({', '.join(cpu['isa'])}); two CPU replicas behind nginx on loopback; 200 ms chunks, not paced.\n\n"
        f"| | |\n| --- | --- |\n{table}\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=12.0, help="length of the streamed speech")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "failover")
    args = parser.parse_args()
    audio = voice.speech(args.seconds, framing.SAMPLE_RATE, seed=5)
    with Cluster.on_free_ports(ROOT / "model_repository", args.output) as cluster:
        result = drill(cluster, audio)
        result.prometheus = prometheus_view(cluster)
    cpu = measure.cpu()
    (args.output / "report.json").write_text(json.dumps({"cpu": cpu, **asdict(result)}, indent=2))
    report = markdown(result, args.seconds, cpu)
    (args.output / "report.md").write_text(report)
    print(report)
    return 1 if result.lost else 0


if __name__ == "__main__":
    sys.exit(main())
