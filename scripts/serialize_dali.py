"""Writes model_repository/audio_features/1/model.dali for Triton's DALI backend (GPU profile).

Run where the GPU is (the Dockerfile.triton entrypoint does); the pipeline is the same one the
CPU profile runs (lipsync/mel_pipeline.py), with the signal processing on the GPU.
"""
import argparse
import sys
from pathlib import Path

from lipsync import mel_pipeline

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "model_repository" / "audio_features" / "1" / "model.dali")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--batch-size", type=int, default=8, help="the model's max_batch_size")
    args = parser.parse_args()
    pipeline = mel_pipeline.build(batch_size=args.batch_size, num_threads=4, device=args.device)
    pipeline.serialize(filename=str(args.output))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
