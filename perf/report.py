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
    memory = r["memory"]
    rows = "\n".join(
        f"| {level['concurrency']} | {level['fps']:.2f} | {level['latency_p50_s']:.2f} | {level['latency_p99_s']:.2f} | {level['requests']} |"
        for level in r["ensemble"]
    )
    return f"""# Benchmark (CPU profile)

{r["audio_seconds"]} s of speech per request ({r["frames_per_request"]} frames), UNet batch {r["unet_batch"]}, {r["threads"]} threads.

| measurement | value |
| --- | --- |
| a. bare networks, ONNX Runtime (ceiling) | {r["bare_fps"]:.2f} frames/s (before/after: {", ".join(f"{v:.2f}" for v in r["bare_fps_before_after"])}) |
| a. the same, UNet quantized to INT8 | {r["int8_fps"]:.2f} frames/s ({r["int8_speedup"]:.2f}x the float run before it), {r["int8_psnr_db"]:.1f} dB PSNR against float |
| b. ensemble, best concurrency ({r["best_concurrency"]}) | {r["ensemble_fps"]:.2f} frames/s |
| c. sequential PyTorch eager (baseline) | {r["sequential_fps"]:.2f} frames/s |
| pipeline efficiency b/a | {r["pipeline_efficiency"]:.2f} |
| speed-up over the baseline b/c | {r["speedup_vs_sequential"]:.2f} |
| d. audio preprocessing (mel + encoder), 8 frames: p50 / p99 | {r["audio_ms_8_frames"]["p50"]:.1f} / {r["audio_ms_p99_8_frames"]:.1f} ms |
| d. the same through the server, two gRPC round trips: p50 / p99 | {r["audio_round_trip_ms_8_frames"]["p50"]:.1f} / {r["audio_round_trip_ms_8_frames"]["p99"]:.1f} ms |
| e. server RSS after 100 / 1000 requests | {memory["rss_mb_after_100"]:.0f} / {memory["rss_mb_after_1000"]:.0f} MB (growth {r["rss_growth_mb_100_to_1000"]:.1f} MB) |
| /dev/shm before server / after 100 / after 1000 / after stop | {memory["shm_mb_before_server"]:.1f} / {memory["shm_mb_after_100"]:.1f} / {memory["shm_mb_after_1000"]:.1f} / {memory["shm_mb_after_server"]:.1f} MB |
| failed requests | {memory["failed_requests"]} |

## Ensemble by concurrency

| concurrent requests | frames/s | p50 s | p99 s | requests |
| --- | --- | --- | --- | --- |
{rows}

![throughput and latency](throughput_latency.png)
"""
