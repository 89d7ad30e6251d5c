"""Frames/s of the lipsync ensemble for 8 s of audio vs the bare ONNX Runtime UNet, one run.

The bare UNet is the ceiling: the same model.onnx, the same batch size (face_generator's
frames_per_unet_request) and threads as the served model, timed in this process with no server
work running. It is measured before and after the ensemble and averaged, and the report gives
the ratio, because this machine's speed drifts between runs.

    make bench                 # or: .venv/bin/python perf/bench_ensemble.py --requests 3
"""
import argparse
import json
import socket
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lipsync import demo, framing
from lipsync.client import LipsyncClient
from lipsync.server import TritonServer

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def bare_unet_fps(onnx: Path, batch: int, frames: int, threads: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "FACE": rng.integers(0, 256, (batch, 320, 320, 3), dtype=np.uint8),
        "AUDIO_FEATURES": rng.standard_normal((batch, 32, 16, 16)).astype(np.float32),
    }
    session.run(None, feeds)  # warm-up: allocations
    runs = -(-frames // batch)
    start = time.perf_counter()
    for _ in range(runs):
        session.run(None, feeds)
    return runs * batch / (time.perf_counter() - start)


def ensemble(client: LipsyncClient, audio: np.ndarray, requests: int) -> tuple[float, list[float], int]:
    client.render(audio[:16000], framing.SAMPLE_RATE, "demo")  # warm-up
    latencies, frames = [], 0
    start = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        frames += len(client.render(audio, framing.SAMPLE_RATE, "demo"))
        latencies.append(time.perf_counter() - t)
    return frames / (time.perf_counter() - start), latencies, frames // requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--requests", type=int, default=3, help="sequential ensemble requests")
    parser.add_argument("--batch", type=int, default=8, help="UNet batch (face_generator's frames_per_unet_request)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (as served)")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench" / "ensemble.json")
    args = parser.parse_args()

    audio = demo.speech(args.seconds, framing.SAMPLE_RATE, seed=1)
    frames = framing.frame_count(len(audio))
    onnx = max((REPOSITORY / "avatar_demo").glob("[0-9]*/model.onnx"), key=lambda p: int(p.parent.name))

    bare_before = bare_unet_fps(onnx, args.batch, frames, args.threads)
    ports = dict(http_port=_free_port(), grpc_port=_free_port(), metrics_port=_free_port())
    log = ROOT / "out" / "bench" / "server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with TritonServer(REPOSITORY, log=log, **ports) as server:
        client = LipsyncClient(f"127.0.0.1:{server.grpc_port}")
        ensemble_fps, latencies, per_request = ensemble(client, audio, args.requests)
    bare_after = bare_unet_fps(onnx, args.batch, frames, args.threads)
    bare = (bare_before + bare_after) / 2

    report = {
        "audio_seconds": args.seconds,
        "frames_per_request": per_request,
        "unet_batch": args.batch,
        "bare_unet_fps": round(bare, 2),
        "bare_unet_fps_before_after": [round(bare_before, 2), round(bare_after, 2)],
        "ensemble_fps": round(ensemble_fps, 2),
        "ensemble_over_bare": round(ensemble_fps / bare, 3),
        "ensemble_latency_s_p50": round(statistics.median(latencies), 2),
        "ensemble_latency_s_max": round(max(latencies), 2),
        "realtime_factor": round(ensemble_fps / framing.FPS, 3),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
