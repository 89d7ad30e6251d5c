#!/usr/bin/env bash
# The prepared GPU check: what a lent accelerator machine runs (a few minutes; nothing installed
# beyond its own PyTorch): perf/gpu_bench.py's figures (avatar creation's training step at the
# reference width 32 among them), and what nvidia-smi says of the GPU.
#
#   scripts/gpu_check.sh              # into $OUT (the device tool's folder), else out/bench
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-out/bench}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" || true
# Within the check's 8 minutes even where the first CUDA call is slow.
PYTHONPATH=protocol:client:server PYTHONUNBUFFERED=1 timeout 420 python3 perf/gpu_bench.py --output "$out" "$@"
