"""`make bench`: one run that measures the CPU profile side by side and writes out/bench/
report.json, report.md and throughput_latency.png.

    a. bare networks (encoder + UNet) in ONNX Runtime, one process: the ceiling; and the same
       with the UNet quantized to INT8 (speed, and PSNR against the float output)
    b. the ensemble end to end over gRPC at several concurrency levels
    c. the reference's sequential loop in PyTorch eager: the baseline
    d. audio preprocessing (mel + encoder) for 8 frames of audio: the processing itself, and
       the round trips through the server's two audio models
    e. server memory (tritonserver and its stubs) and /dev/shm after 100 and 1000 requests

Ratios are taken within the run (b/a, b/c), because this machine's speed drifts between runs.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import measure
import numpy as np
import report

from lipsync import framing
from lipsync_server.audio import mel_pipeline
from lipsync_server.avatars import quantization, repository
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.demo import synthetic
from lipsync_server.launcher.tritonserver import TritonServer
from lipsync_server.networks import checkpoints

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per ensemble request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rounds", type=int, default=2, help="requests per concurrent client and level")
    parser.add_argument("--sequential-frames", type=int, default=25)
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8, help="face_generator's frames_per_unet_request")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime / PyTorch threads, as served")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    audio = synthetic.speech(args.seconds, framing.SAMPLE_RATE, seed=1)
    unet_onnx = REPOSITORY / "avatar_demo" / str(synthetic.BENCHMARK_VERSION) / "model.onnx"
    encoder_onnx = repository.latest_encoder(REPOSITORY)
    mel = mel_pipeline.mel_of(audio)
    results: dict = {
        "audio_seconds": args.seconds,
        "frames_per_request": framing.frame_count(len(audio)),
        "unet_batch": args.batch,
        "threads": args.threads,
    }

    print("a. bare networks", flush=True)
    bare = [measure.bare_networks_fps(encoder_onnx, unet_onnx, mel, args.batch, args.threads)]
    print("a. bare networks with the UNet quantized to INT8", flush=True)
    int8_onnx = args.output / "int8" / "model.onnx"
    int8_onnx.parent.mkdir(exist_ok=True)
    faces = np.load(media_dir(REPOSITORY, "demo") / "faces.npy", mmap_mode="r")
    results["int8_psnr_db"] = quantization.quantize_model(unet_onnx, int8_onnx, faces, encoder_onnx)
    results["int8_fps"] = measure.bare_networks_fps(encoder_onnx, int8_onnx, mel, args.batch, args.threads)
    print("d. audio preprocessing, in process", flush=True)
    results["audio_ms_8_frames"] = measure.summary(
        measure.audio_processing_ms(encoder_onnx, 8 * framing.SAMPLES_PER_FRAME, 200, args.threads)
    )
    print("c. sequential PyTorch baseline", flush=True)
    encoder = checkpoints.load_audio_encoder(ROOT / "checkpoints" / "audio_visual_encoder.pth")
    unet = checkpoints.load_unet(ROOT / "build" / "checkpoints" / "demo" / f"{synthetic.BENCHMARK_VERSION}.pth")
    media = AvatarMedia(media_dir(REPOSITORY, "demo"))
    results["sequential_fps"] = measure.sequential_fps(
        audio, encoder, unet, media, args.sequential_frames, args.threads
    )

    shm_before = measure.shm_mb()
    with TritonServer.on_free_ports(REPOSITORY, log=args.output / "server.log") as server:
        url = f"127.0.0.1:{server.grpc_port}"
        print("b. ensemble sweep", flush=True)
        results["ensemble"] = measure.ensemble_sweep(url, audio, args.concurrency, args.rounds)
        print("d. audio preprocessing latency over gRPC", flush=True)
        audio_ms = measure.audio_latency_ms(url, 8 * framing.SAMPLES_PER_FRAME, 200)
        results["audio_round_trip_ms_8_frames"] = measure.summary(audio_ms)
        print("e. memory under load", flush=True)
        small = audio[: framing.MIN_SAMPLES]
        failures = measure.load(url, small, 100, 4)
        memory = {"rss_mb_after_100": measure.server_rss_mb(server.running.pid), "shm_mb_after_100": measure.shm_mb()}
        failures += measure.load(url, small, max(0, args.memory_requests - 100), 4)
        memory.update(
            rss_mb_after_1000=measure.server_rss_mb(server.running.pid),
            shm_mb_after_1000=measure.shm_mb(),
            failed_requests=failures,
        )
    time.sleep(1)
    memory.update(shm_mb_before_server=shm_before, shm_mb_after_server=measure.shm_mb())
    results["memory"] = memory
    print("a. bare networks, again", flush=True)
    bare.append(measure.bare_networks_fps(encoder_onnx, unet_onnx, mel, args.batch, args.threads))

    best = max(results["ensemble"], key=lambda level: level["fps"])
    results.update(
        bare_fps=float(np.mean(bare)),
        bare_fps_before_after=bare,
        ensemble_fps=best["fps"],
        best_concurrency=best["concurrency"],
        pipeline_efficiency=best["fps"] / float(np.mean(bare)),
        int8_speedup=results["int8_fps"] / bare[0],
        speedup_vs_sequential=best["fps"] / results["sequential_fps"],
        audio_ms_p99_8_frames=results["audio_ms_8_frames"]["p99"],
        rss_growth_mb_100_to_1000=memory["rss_mb_after_1000"] - memory["rss_mb_after_100"],
        live_streams_kept_up=None,  # from `make loadtest` (Locust), when it has been run
    )
    report.write(results, args.output)
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, (list, dict))}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
