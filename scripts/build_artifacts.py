"""Builds everything the CPU profile serves that is not in git (idempotent; `make artifacts`).

- build/checkpoints/: seeded, untrained checkpoints in SyncTalk_2D's file formats;
- model_repository/audio_encoder/1/model.onnx, loaded from the encoder checkpoint;
- model_repository/avatar_demo/: the drawn demo avatar, versions 1 and 2 from two UNet
  checkpoints (different seeds: "retrained weights");
- assets/sample.wav: speech-like audio for the demo.
Checkpoints go through lipsync.checkpoints exactly as imported ones would.
"""
import argparse
import sys
from pathlib import Path

import soundfile
import torch

from lipsync import checkpoints, demo, repository
from lipsync.networks.audio_encoder import AudioEncoder
from lipsync.networks.export import export_audio_encoder
from lipsync.networks.unet import LipSyncUNet

ROOT = Path(__file__).resolve().parents[1]


def save_checkpoint(network: torch.nn.Module, path: Path) -> Path:
    """Saves the network's (seeded, initial) weights as a plain state_dict, once."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(network.state_dict(), path)
    return path


def build(repo: Path, build_dir: Path, assets: Path, frames: int) -> None:
    ckpt = build_dir / "checkpoints"
    torch.manual_seed(0)
    encoder_ckpt = save_checkpoint(AudioEncoder().audio_encoder, ckpt / "audio_visual_encoder.pth")
    encoder_onnx = repo / "audio_encoder" / "1" / "model.onnx"
    if not encoder_onnx.exists():
        export_audio_encoder(checkpoints.load_audio_encoder(encoder_ckpt), encoder_onnx)
        print(f"wrote {encoder_onnx}")

    if not (repo / "avatar_demo" / "media" / "rects.json").exists():
        pairs = list(demo.avatar_frames(frames))
        repository.write_media(repo, "demo", (f for f, _ in pairs), [r for _, r in pairs])
        print(f"wrote demo avatar media ({frames} frames)")
    for version in (1, 2):
        if not (repo / "avatar_demo" / str(version) / "model.onnx").exists():
            torch.manual_seed(version)
            unet_ckpt = save_checkpoint(LipSyncUNet(), ckpt / "demo" / f"{version}.pth")
            repository.add_version(repo, "demo", checkpoints.load_unet(unet_ckpt), version)
            print(f"wrote demo avatar version {version}")

    sample = assets / "sample.wav"
    if not sample.exists():
        sample.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(sample, demo.speech(4.0, 16_000), 16_000, subtype="PCM_16")
        print(f"wrote {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--assets", type=Path, default=ROOT / "assets")
    parser.add_argument("--frames", type=int, default=120, help="demo avatar frames")
    args = parser.parse_args()
    build(args.repository, args.build_dir, args.assets, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
