"""`make bench-ort`: ONNX Runtime settings for the avatar UNet on this machine, side by side.

Each row runs the demo avatar's UNet for the same frames and reports frames/s relative to
the served setting (batch 8, 2 intra-op threads, all graph optimisations, spinning on), which
is measured first and again last so that drift shows. "2 processes x 1 thread" is the
two-instance layout: two sessions in separate processes working at the same time.

Writes out/bench/ort_sweep.json and ort_sweep.md.
"""

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from lipsync_server.demo import synthetic

ROOT = Path(__file__).resolve().parents[1]
SERVED = {"batch": 8, "threads": 2, "optimization": "all", "spinning": True, "processes": 1}
LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


def run(model: str, setting: dict, frames: int) -> float:
    """Frames/s of one process running `frames` frames with `setting`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = setting["threads"], 1
    options.graph_optimization_level = LEVELS[setting["optimization"]]
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if setting["spinning"] else "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    batch = setting["batch"]
    inputs = {
        "FACE": rng.integers(0, 256, (batch, 320, 320, 3), dtype=np.uint8),
        "AUDIO_FEATURES": rng.standard_normal((batch, 32, 16, 16)).astype(np.float32),
    }
    for _ in range(2):  # warm-up: the first runs of a shape allocate and are slow
        session.run(["FACE_RGB"], inputs)
    start = time.perf_counter()
    for _ in range(max(1, frames // batch)):
        session.run(["FACE_RGB"], inputs)
    return max(1, frames // batch) * batch / (time.perf_counter() - start)


def _run_star(job):
    return run(*job)


def measure(model: str, setting: dict, frames: int) -> float:
    """Frames/s of the whole layout: processes work at once, their rates add up."""
    with multiprocessing.get_context("spawn").Pool(setting["processes"]) as pool:
        return sum(pool.map(_run_star, [(model, setting, frames // setting["processes"])] * setting["processes"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", type=Path, default=None, help="UNet model.onnx (default: the demo avatar's reference-size version)"
    )
    parser.add_argument("--frames", type=int, default=48, help="frames per measurement")
    parser.add_argument("--output", type=Path, default=ROOT / "out" / "bench")
    args = parser.parse_args()
    model = args.model or ROOT / "model_repository" / "avatar_demo" / str(synthetic.BENCHMARK_VERSION) / "model.onnx"
    changes: list[dict[str, Any]] = [
        {},
        {"batch": 1},
        {"batch": 4},
        {"threads": 1},
        {"spinning": False},
        {"optimization": "basic"},
        {"processes": 2, "threads": 1},
        {"processes": 2, "threads": 1, "spinning": False},
        {},
    ]
    rows: list[dict[str, Any]] = []
    for change in changes:
        setting = {**SERVED, **change}
        fps = measure(str(model), setting, args.frames)
        rows.append({"change": change or "served setting", **setting, "fps": fps})
        print(f"{json.dumps(change or 'served setting')}: {fps:.2f} frames/s", flush=True)
    baseline = (rows[0]["fps"] + rows[-1]["fps"]) / 2
    for row in rows:
        row["ratio_to_served"] = row["fps"] / baseline
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "ort_sweep.json").write_text(json.dumps({"model": str(model), "rows": rows}, indent=2))
    lines = [
        "# ONNX Runtime settings for the UNet",
        "",
        f"Model: `{model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}`, "
        f"{args.frames} frames per row; ratio against the served setting (mean of first and last row).",
        "",
        "| change from the served setting | frames/s | ratio |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {json.dumps(r['change'])} | {r['fps']:.2f} | {r['ratio_to_served']:.2f} |" for r in rows]
    (args.output / "ort_sweep.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
