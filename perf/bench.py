"""`make bench`: one run that measures the CPU profile side by side and writes out/bench/
report.json, report.md and throughput_latency.png.

    a.  bare networks (encoder + UNet), one process, for each CPU runtime and precision (ONNX
        Runtime fp32, OpenVINO fp32, OpenVINO bf16 where the CPU has it), at reference size and
        for the trained demo; the INT8 UNet (speed, and PSNR against the float output)
    a'. the served runtime and precision with paste and JPEG, one process without Triton: the
        same work as the ensemble
    b.  the ensemble end to end over gRPC at several concurrency levels, each level run twice,
        with the time per step from Triton's per-model statistics; and the ensemble as served
        before this runtime choice (ONNX Runtime fp32) at its best levels
    c.  the reference's sequential loop in PyTorch eager: the baseline
    d.  audio preprocessing (mel + encoder) for 8 frames of audio: the processing itself, and
        the round trips through the server's two audio models
    e.  server memory (tritonserver and its stubs) and /dev/shm after 100 and 1000 requests

The report names the CPU: figures differ between machines and are compared only within a run
(b/a', b/a, b/c). Every avatar here is the demo's reference-size version unless named.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import measure
import numpy as np
import report

from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server import runtimes
from lipsync_server.audio import mel_pipeline
from lipsync_server.avatars import quality_record, quantization, repository
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.backend import runtime_choice
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic
from lipsync_server.launcher.tritonserver import TritonServer
from lipsync_server.model_configs import set_parameters
from lipsync_server.networks import checkpoints

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per ensemble request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=8, help="requests per run of a concurrency level (at least)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each concurrency level")
    parser.add_argument("--sequential-frames", type=int, default=25)
    parser.add_argument("--memory-requests", type=int, default=1000)
    parser.add_argument(
        "--batch", type=int, default=1, help="the UNet's frames a run, as served (the avatar config's frames_per_run)"
    )
    parser.add_argument("--threads", type=int, default=2, help="runtime / PyTorch threads, as served")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)

    audio = voice.speech(args.seconds, framing.SAMPLE_RATE, seed=1)
    unets = {size: REPOSITORY / "avatar_demo" / str(v) / "model.onnx" for size, v in VERSIONS.items()}
    encoder_onnx = repository.latest_encoder(REPOSITORY)
    mel = mel_pipeline.mel_of(audio)
    media = AvatarMedia(media_dir(REPOSITORY, "demo"))
    results: dict = {
        "cpu": measure.cpu(),
        "audio_seconds": args.seconds,
        "frames_per_request": framing.frame_count(len(audio)),
        "unet_batch": args.batch,
        "threads": args.threads,
    }
    print(f"CPU: {results['cpu']}", flush=True)
    served = expected_served(unets["reference_size"], args.batch, args.threads)
    results["served_expected"] = served

    print("a. bare networks, each runtime and precision", flush=True)
    results["runtimes"] = {
        size: {
            f"{runtime} {precision}": measure.bare_networks_fps(
                encoder_onnx, unet, mel, args.batch, args.threads, runtime, precision
            )
            for runtime, precision in candidates()
        }
        for size, unet in unets.items()
    }
    bare = [results["runtimes"]["reference_size"][served]]
    print("a. bare networks with the UNet quantized to INT8", flush=True)
    int8_onnx = args.output / "int8" / "model.onnx"
    int8_onnx.parent.mkdir(exist_ok=True)
    faces = np.load(media_dir(REPOSITORY, "demo") / "faces.npy", mmap_mode="r")
    results["int8_psnr_db"] = quantization.quantize_model(unets["reference_size"], int8_onnx, faces, encoder_onnx)
    results["int8"] = {
        f"{runtime} fp32": measure.bare_networks_fps(
            encoder_onnx, int8_onnx, mel, args.batch, args.threads, runtime, runtimes.FP32
        )
        for runtime in runtimes.RUNTIMES
    }
    print("d. audio preprocessing, in process", flush=True)
    results["audio_ms_8_frames"] = measure.summary(
        measure.audio_processing_ms(encoder_onnx, 8 * framing.SAMPLES_PER_FRAME, 200, args.threads, _runtime(served))
    )
    print("c. sequential PyTorch baseline", flush=True)
    encoder = checkpoints.load_audio_encoder(ROOT / "checkpoints" / "audio_visual_encoder.pth")
    unet = checkpoints.load_unet(ROOT / "build" / "checkpoints" / "demo" / f"{synthetic.BENCHMARK_VERSION}.pth")
    results["sequential_fps"] = measure.sequential_fps(
        audio, encoder, unet, media, args.sequential_frames, args.threads
    )

    shm_before = measure.shm_mb()
    log = args.output / "server.log"
    log.unlink(missing_ok=True)
    with TritonServer.on_free_ports(REPOSITORY, log=log) as server:
        url = f"127.0.0.1:{server.grpc_port}"
        print("b. ensemble sweep", flush=True)
        client = LipsyncClient(url)
        before = client.statistics()
        results["ensemble"] = measure.ensemble_sweep(url, audio, args.concurrency, args.requests, args.repeats)
        swept = sum(level["requests"] for level in results["ensemble"]) * results["frames_per_request"]
        results["steps"] = measure.step_costs(before, client.statistics(), swept)
        results["served"] = {
            f"{model}/{version}": how for (model, version), how in runtimes.served(server.metrics()).items()
        }
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
    served_now = results["served"].get(f"avatar_demo/{synthetic.BENCHMARK_VERSION}", "?")
    if served_now != served:
        print(f"note: the server ran {served_now}, this run expected {served}", flush=True)

    print("b. the ensemble as served before: ONNX Runtime fp32", flush=True)
    before_repository = onnx_runtime_copy(args.output / "onnxruntime_repository")
    with TritonServer.on_free_ports(before_repository, log=args.output / "server_onnxruntime.log") as server:
        results["ensemble_onnxruntime"] = measure.ensemble_sweep(
            f"127.0.0.1:{server.grpc_port}", audio, args.concurrency[:2], args.requests, 1
        )
    print("a'. served networks with paste and JPEG, one process", flush=True)
    results["networks_and_compositing_fps"] = measure.networks_and_compositing_fps(
        encoder_onnx, unets["reference_size"], mel, media, args.batch, args.threads, served
    )
    print("a. bare networks, served runtime, again", flush=True)
    bare.append(
        measure.bare_networks_fps(
            encoder_onnx, unets["reference_size"], mel, args.batch, args.threads, _runtime(served), served.split()[-1]
        )
    )

    best = max(results["ensemble"], key=lambda level: level["fps"])
    best_before = max(results["ensemble_onnxruntime"], key=lambda level: level["fps"])
    results.update(
        bare_fps=float(np.mean(bare)),
        bare_fps_before_after=bare,
        ensemble_fps=best["fps"],
        ensemble_spread=best["spread"],
        best_concurrency=best["concurrency"],
        ensemble_onnxruntime_fps=best_before["fps"],
        speedup_vs_onnxruntime=best["fps"] / best_before["fps"],
        efficiency_vs_compositing=best["fps"] / results["networks_and_compositing_fps"],
        pipeline_efficiency=best["fps"] / float(np.mean(bare)),
        int8_speedup=results["int8"][f"{_runtime(served)} fp32"] / bare[0],
        speedup_vs_sequential=best["fps"] / results["sequential_fps"],
        audio_ms_p99_8_frames=results["audio_ms_8_frames"]["p99"],
        rss_growth_mb_100_to_1000=memory["rss_mb_after_1000"] - memory["rss_mb_after_100"],
        live_streams_kept_up=None,  # from `make loadtest` (Locust), when it has been run
    )
    report.write(results, args.output)
    print(json.dumps({k: v for k, v in results.items() if not isinstance(v, (list, dict))}, indent=2))
    return 0


VERSIONS = {"reference_size": synthetic.BENCHMARK_VERSION, "trained": synthetic.TRAINED_VERSION}


def candidates() -> list[tuple[str, str]]:
    found = [(runtimes.ONNXRUNTIME, runtimes.FP32), (runtimes.OPENVINO, runtimes.FP32)]
    return found + ([(runtimes.OPENVINO, runtimes.BF16)] if runtimes.has_native_bf16() else [])


def expected_served(unet_onnx: Path, batch: int, threads: int) -> str:
    """What the server will run the reference-size version with: the same rules (and the same
    cached measurement) as its avatar model, "openvino bf16" say."""
    precision, _ = quality_record.served_precision(
        runtimes.has_native_bf16(), quality_record.bf16_psnr(unet_onnx.parent), quality_record.MIN_PSNR_DB
    )
    runtime, precision, _ = runtime_choice.fastest(
        unet_onnx,
        precision,
        threads,
        batch,
        fixed=batch == 1,
        or_fp32=True,  # the avatars' precision: auto
    )
    return f"{runtime} {precision}"


def _runtime(served: str) -> str:
    return served.split()[0]


def onnx_runtime_copy(target: Path) -> Path:
    """The repository as served before OpenVINO: every CPU model on ONNX Runtime in fp32."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(REPOSITORY, target, symlinks=True)
    for config in [
        target / "avatar_demo" / "configs" / "cpu.pbtxt",
        target / "audio_encoder" / "configs" / "cpu.pbtxt",
    ]:
        set_parameters(config, runtime="onnxruntime", precision="fp32")
    return target


if __name__ == "__main__":
    sys.exit(main())
