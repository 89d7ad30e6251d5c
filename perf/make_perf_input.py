"""Writes perf_analyzer's --input-data JSON for the lipsync ensemble: speech-like clips."""

import argparse
import json
import sys
from pathlib import Path

from lipsync_protocol import framing
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--clips", type=int, default=3)
    parser.add_argument("--avatar", default="demo")
    parser.add_argument("--version", type=int, default=synthetic.BENCHMARK_VERSION, help="0: the latest")
    args = parser.parse_args()
    entries = []
    for seed in range(args.clips):
        audio = voice.speech(args.seconds, framing.SAMPLE_RATE, seed=seed)
        entries.append(
            {
                "AUDIO": {"content": [round(float(v), 6) for v in audio], "shape": [len(audio)]},
                "SAMPLE_RATE": {"content": [framing.SAMPLE_RATE], "shape": [1]},
                "AVATAR": {"content": [args.avatar], "shape": [1]},
                "START_FRAME": {"content": [seed * 10], "shape": [1]},
                "AVATAR_VERSION": {"content": [args.version], "shape": [1]},
            }
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"data": entries}))
    print(f"wrote {args.output}: {args.clips} clips of {args.seconds} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
