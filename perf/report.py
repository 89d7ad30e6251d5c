"""Writes the benchmark's report.json, report.md and throughput/latency plot."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def write(results: dict, folder: Path) -> None:
    (folder / "report.json").write_text(json.dumps(results, indent=2))
    _plot(results["ensemble"], folder / "throughput_latency.png", results["bare_fps"])
    (folder / "report.md").write_text(_markdown(results))


def _plot(levels: list[dict], path: Path, ceiling: float) -> None:
    concurrency = [level["concurrency"] for level in levels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(concurrency, [level["fps"] for level in levels], marker="o", label="ensemble")
    left.axhline(ceiling, color="grey", linestyle="--", label="bare networks (ceiling)")
    left.set(xlabel="concurrent requests", ylabel="frames/s", title="Throughput")
    left.legend()
    right.plot(concurrency, [level["latency_p50_s"] for level in levels], marker="o", label="p50")
    right.plot(concurrency, [level["latency_p99_s"] for level in levels], marker="o", label="p99")
    right.set(xlabel="concurrent requests", ylabel="seconds per request", title="Latency")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _markdown(r: dict) -> str:
    memory, cpu = r["memory"], r["cpu"]
    rows = "\n".join(
        f"| {level['concurrency']} | {level['fps']:.2f} | {', '.join(f'{v:.2f}' for v in level['fps_runs'])} | {100 * level['spread']:.1f}% | {level['latency_p50_s']:.2f} | {level['latency_p99_s']:.2f} | {level['requests']} | {level['refused']} |"
        for level in r["ensemble"]
    )
    before = "\n".join(
        f"| {level['concurrency']} | {level['fps']:.2f} | {level['latency_p50_s']:.2f} | {level['latency_p99_s']:.2f} |"
        for level in r["ensemble_onnxruntime"]
    )
    sizes = list(r["runtimes"])
    names = list(r["runtimes"][sizes[0]])
    runtimes = "\n".join(
        f"| {name} | " + " | ".join(f"{r['runtimes'][size][name]:.2f}" for size in sizes) + " |" for name in names
    )
    steps = "\n".join(
        f"| {model} | {cost['requests']} | {cost['queue_ms_per_frame']:.2f} | {cost['compute_ms_per_frame']:.2f} |"
        for model, cost in sorted(r["steps"].items())
    )
    served = ", ".join(f"{model}: {how}" for model, how in sorted(r["served"].items()))
    int8 = ", ".join(f"{name} {fps:.2f}" for name, fps in r["int8"].items())
    return f"""# Benchmark (CPU profile)

CPU: **{cpu["model"]}**, {cpu["cores"]} cores, ISA {", ".join(cpu["isa"]) or "none of note"}, native bf16: {cpu["native_bf16"]}.
Figures differ between machines: compare them only within this report.

{r["audio_seconds"]} s of speech per request ({r["frames_per_request"]} frames), UNet run {r["unet_batch"]} frame(s) at a time as served, {r["threads"]} threads.
Served (from the server's log): {served}.

| measurement | value |
| --- | --- |
| a. bare networks, served runtime ({r["served_expected"]}), reference size (ceiling) | {r["bare_fps"]:.2f} frames/s (before/after: {", ".join(f"{v:.2f}" for v in r["bare_fps_before_after"])}) |
| a'. the same with paste and JPEG, one process | {r["networks_and_compositing_fps"]:.2f} frames/s |
| a. the UNet quantized to INT8 | {int8} frames/s ({r["int8_speedup"]:.2f}x the served float run), {r["int8_psnr_db"]:.1f} dB PSNR against float |
| b. ensemble, best concurrency ({r["best_concurrency"]}) | {r["ensemble_fps"]:.2f} frames/s (spread between its runs {100 * r["ensemble_spread"]:.1f}%) |
| b. ensemble as served before (ONNX Runtime fp32), best level | {r["ensemble_onnxruntime_fps"]:.2f} frames/s |
| c. sequential PyTorch eager (baseline) | {r["sequential_fps"]:.2f} frames/s |
| b/a' (ensemble against the same work in one process) | {r["efficiency_vs_compositing"]:.2f} |
| b/a (pipeline efficiency) | {r["pipeline_efficiency"]:.2f} |
| b against the ensemble as served before | {r["speedup_vs_onnxruntime"]:.2f}x |
| speed-up over the baseline b/c | {r["speedup_vs_sequential"]:.2f} |
| d. audio preprocessing (mel + encoder), 8 frames: p50 / p99 | {r["audio_ms_8_frames"]["p50"]:.1f} / {r["audio_ms_p99_8_frames"]:.1f} ms |
| d. the same through the server, two gRPC round trips: p50 / p99 | {r["audio_round_trip_ms_8_frames"]["p50"]:.1f} / {r["audio_round_trip_ms_8_frames"]["p99"]:.1f} ms |
| e. server RSS after 100 / 1000 requests | {memory["rss_mb_after_100"]:.0f} / {memory["rss_mb_after_1000"]:.0f} MB (growth {r["rss_growth_mb_100_to_1000"]:.1f} MB) |
| /dev/shm before server / after 100 / after 1000 / after stop | {memory["shm_mb_before_server"]:.1f} / {memory["shm_mb_after_100"]:.1f} / {memory["shm_mb_after_1000"]:.1f} / {memory["shm_mb_after_server"]:.1f} MB |
| failed requests | {memory["failed_requests"]} |
| live 25 fps streams kept up (`make loadtest`, 200 ms chunks) | {_streams(r["live_streams_kept_up"])} |

## a. Bare networks by runtime and precision (frames/s)

| runtime | {" | ".join(size.replace("_", " ") for size in sizes)} |
| --- | {" | ".join("---" for _ in sizes)} |
{runtimes}

## b. Ensemble by concurrency

| concurrent requests | frames/s (mean) | runs | spread | p50 s | p99 s | requests | refused |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

As served before (ONNX Runtime fp32):

| concurrent requests | frames/s | p50 s | p99 s |
| --- | --- | --- | --- |
{before}

## b. Where the time goes (Triton's per-model statistics over the sweep, per frame)

face_generator's compute includes the avatar's UNet calls it makes; the ensembles' own rows are the whole request.

| model/version | requests | queue ms/frame | compute ms/frame |
| --- | --- | --- | --- |
{steps}

![throughput and latency](throughput_latency.png)
"""


def _streams(kept_up: dict | None) -> str:
    if not kept_up:
        return "not measured in this run (`make loadtest` after `make bench` fills it in)"
    return ", ".join(f"{size.replace('_', ' ')}: {count}" for size, count in kept_up.items())
