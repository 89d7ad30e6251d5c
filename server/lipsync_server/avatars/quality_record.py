"""An avatar version's quality record, quality.json beside its model (what quality.py and
quantization measure, and creation's gates report), and the precision the server serves by it.
Read by the server at each load; written by the tools."""

import json
from pathlib import Path

from lipsync_server import runtimes

QUALITY_FILE = "quality.json"
MIN_PSNR_DB = 35.0  # a cheaper form (bf16, int8) is served only this close to float32


def read(version_folder: Path) -> dict:
    try:
        return json.loads((Path(version_folder) / QUALITY_FILE).read_text())
    except (OSError, ValueError):
        return {}


def write(version_folder: Path, record: dict) -> None:
    (Path(version_folder) / QUALITY_FILE).write_text(json.dumps(record, indent=2) + "\n")


def bf16_psnr(version_folder: Path) -> float | None:
    """The recorded PSNR of the version's bf16 output against fp32, if it was measured."""
    measured = read(version_folder).get("bf16", {}).get("psnr_db")
    return float(measured) if isinstance(measured, int | float) else None


def served_precision(native_bf16: bool, measured_db: float | None, minimum_db: float) -> tuple[str, str]:
    """(precision, why) of a float version under `precision: auto`."""
    if not native_bf16:
        return runtimes.FP32, "auto: this CPU has no native bf16"
    if measured_db is None:
        return runtimes.FP32, "auto: bf16 not measured for this version (lipsync-server quality NAME)"
    if measured_db < minimum_db:
        return runtimes.FP32, f"auto: bf16 measured at {measured_db:.1f} dB PSNR, below {minimum_db:.1f}"
    return runtimes.BF16, f"auto: bf16 measured at {measured_db:.1f} dB PSNR against fp32"
