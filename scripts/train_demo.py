"""Trains the demo avatar's networks on synthetic data and writes SyncTalk_2D checkpoints.

    python scripts/train_demo.py          # 18 min on 2 CPU cores; `make train`

1. writes build/dataset/demo_train/ (SyncTalk_2D layout: full_body_img/, landmarks/, aud.wav):
   the drawn person speaking synthetic speech, the mouth following it (lipsync.mouth_track);
2. trains the audio encoder, then the UNet (lipsync.training), seeded;
3. writes checkpoints/audio_visual_encoder.pth and checkpoints/demo/<epoch>.pth (half precision),
   and checkpoints/demo/training.json: settings, losses, time, and the in-process sync check on
   held-out speech. `make artifacts` imports them as the demo avatar's trained version.
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from lipsync_server.demo import training

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT / "build" / "dataset" / "demo_train")
    parser.add_argument("--output", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the training speech")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--encoder-steps", type=int, default=300)
    parser.add_argument("--unet-steps", type=int, default=550)
    parser.add_argument("--width", type=int, default=8, help="UNet base channels (reference: 32)")
    args = parser.parse_args()
    if args.seed in (training.HELD_OUT_SEED, training.HELD_OUT_SEED + 1):
        parser.error(f"seed {args.seed} makes the held-out speech of the sync test")

    torch.manual_seed(args.seed)
    started = time.monotonic()
    if not (args.dataset / "aud.wav").exists():
        count = training.make_dataset(args.dataset, args.seconds, args.seed)
        print(f"wrote {args.dataset} ({count} frames)", flush=True)
    data = training.load_dataset(args.dataset)
    log = lambda line: print(line, flush=True)  # noqa: E731
    encoder = training.train_audio_encoder(data, args.encoder_steps, log=log)
    features = training.audio_features(encoder, data.mel)
    unet = training.train_unet(data, features, args.unet_steps, args.width, seed=args.seed, log=log)
    seconds = time.monotonic() - started

    r = training.demo_held_out_sync(unet, encoder)
    epochs = max(1, round(args.unet_steps * training.UNET_BATCH / len(data.crops)))
    encoder_path = training.save_half(encoder.audio_encoder, args.output / "audio_visual_encoder.pth")
    unet_path = training.save_half(unet, args.output / "demo" / f"{epochs}.pth")
    report = {
        "command": " ".join(["python", "scripts/train_demo.py", *sys.argv[1:]]),
        "seed": args.seed,
        "training_speech_seconds": args.seconds,
        "frames": len(data.crops),
        "encoder_steps": args.encoder_steps,
        "unet_steps": args.unet_steps,
        "unet_width": args.width,
        "training_seconds": round(seconds),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "held_out_sync_r_in_process": round(r, 3),
    }
    (args.output / "demo" / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {encoder_path} and {unet_path} in {seconds / 60:.1f} min; held-out sync r = {r:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
