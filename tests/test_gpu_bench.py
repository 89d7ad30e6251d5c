"""perf/gpu_bench.py runs its whole path (network, GPU-style compositing, report) on the CPU,
so the script is known to work before a GPU machine is lent to run it for real."""

import json
import subprocess
import sys
from pathlib import Path

from lipsync_protocol import framing

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_bench_runs_on_cpu_and_writes_its_report(tmp_path):
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "perf" / "gpu_bench.py"),
            "--device",
            "cpu",
            "--batches",
            "1",
            "2",
            "--clip-seconds",
            "1",
            "--iterations",
            "1",
            "--train-width",
            "8",
            "--output",
            str(tmp_path),
        ],
        check=True,
        timeout=300,
    )
    report = json.loads((tmp_path / "gpu.json").read_text())
    assert report["engine"] == "PyTorch fp32 (CPU check)" and report["frame_size"] == "1280x720"
    assert [row["batch"] for row in report["rows"]] == [1, 2]
    assert all(row["network_and_compositing_fps"] > 0 for row in report["rows"])
    assert "| 2 |" in (tmp_path / "gpu.md").read_text()
    (fp32, fp16) = report["encoder"]
    assert fp32["precision"] == "fp32" and fp16["precision"] == "fp16" and fp32["ms_per_clip"] > 0
    assert fp32["frames"] == framing.frame_count(framing.SAMPLE_RATE)  # the served graph's frames for 1 s
    assert report["weights_fp16_mb"] > 0
    assert report["training"]["width"] == 8 and report["training"]["step_s"] > 0  # creation's step, timed


def test_gpu_bench_needs_neither_opencv_nor_onnx_runtime():
    """A GPU machine may have PyTorch and little else (the lent one has no soundfile): the
    benchmark takes the crop geometry from a module that imports nothing."""
    probe = (
        "import sys; sys.path.insert(0, 'perf'); import gpu_bench; "
        "print({'cv2', 'onnxruntime', 'soundfile', 'tritonclient'} & set(sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "set()"
