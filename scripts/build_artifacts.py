"""Builds everything the CPU profile serves that is not in git (idempotent; `make artifacts`).

- model_repository/audio_encoder/1/model.onnx from the trained checkpoint in checkpoints/;
- model_repository/avatar_demo/: the drawn person, idle (a SyncTalk_2D dataset written to
  build/dataset/demo/, then imported), with two versions (lipsync.demo says why):
  1, the reference-size UNet, seeded and untrained (its checkpoint goes to build/checkpoints/);
  2, the trained narrow UNet from checkpoints/demo/ (scripts/train_demo.py made it);
- assets/sample.wav: two phrases of speech-like audio with a pause (seeds the training never used).
Checkpoints and the dataset go through the importer exactly as a user's would.

`--clean` removes what this build writes (outputs()) and nothing else: the repository also holds
what users add there, other avatars (`lipsync-server import`) and more versions of the demo
(`lipsync-server quantize demo`), which no build step may touch. `--rebuild` is `--clean`, then
the build.
"""

import argparse
import shutil
import sys
from pathlib import Path

import soundfile
import torch

from lipsync_server.avatars import importer
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic
from lipsync_server.networks import checkpoints
from lipsync_server.networks.export import export_audio_encoder
from lipsync_server.networks.unet import LipSyncUNet

ROOT = Path(__file__).resolve().parents[1]
TRAINED = ROOT / "checkpoints"


def outputs(repo: Path, build_dir: Path, assets: Path) -> list[Path]:
    """Every path this build writes."""
    demo_model = repo / "avatar_demo"
    return [
        repo / "audio_encoder" / "1" / "model.onnx",
        demo_model / "media",
        demo_model / "config.pbtxt",
        demo_model / "configs",
        *(demo_model / str(v) for v in (synthetic.BENCHMARK_VERSION, synthetic.TRAINED_VERSION)),
        build_dir / "dataset" / "demo",
        build_dir / "checkpoints" / "demo",
        assets / "sample.wav",
    ]


def clean(repo: Path, build_dir: Path, assets: Path) -> None:
    for path in outputs(repo, build_dir, assets):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def trained_unet(folder: Path) -> Path:
    """The newest `<epoch>.pth` of a SyncTalk_2D checkpoint folder."""
    epochs = [p for p in folder.glob("*.pth") if p.stem.isdigit()]
    if not epochs:
        raise SystemExit(f"no <epoch>.pth in {folder}: run `make train` (scripts/train_demo.py)")
    return max(epochs, key=lambda p: int(p.stem))


def build(repo: Path, build_dir: Path, assets: Path, frames: int) -> None:
    encoder_onnx = repo / "audio_encoder" / "1" / "model.onnx"
    if not encoder_onnx.exists():
        export_audio_encoder(checkpoints.load_audio_encoder(TRAINED / "audio_visual_encoder.pth"), encoder_onnx)
        print(f"wrote {encoder_onnx}")

    if not (repo / "avatar_demo" / "media" / "rects.json").exists():
        dataset = build_dir / "dataset" / "demo"
        if not (dataset / "full_body_img").exists():
            synthetic.write_dataset(dataset, synthetic.avatar_frames(frames))
        importer.import_avatar(repo, "demo", dataset=dataset)
        print(f"imported the demo avatar from {dataset} ({frames} frames)")
    untrained = build_dir / "checkpoints" / "demo" / f"{synthetic.BENCHMARK_VERSION}.pth"
    if not untrained.exists():
        untrained.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(synthetic.BENCHMARK_VERSION)
        torch.save(LipSyncUNet().state_dict(), untrained)
    for version, checkpoint in (
        (synthetic.BENCHMARK_VERSION, untrained),
        (synthetic.TRAINED_VERSION, trained_unet(TRAINED / "demo")),
    ):
        if not (repo / "avatar_demo" / str(version)).exists():
            importer.import_unet(repo, "demo", checkpoint, version)
            print(f"wrote demo avatar version {version} from {checkpoint}")

    sample = assets / "sample.wav"
    if not sample.exists():
        sample.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(sample, voice.speech_with_pause(2.8, 1.2, 2.5, 16_000), 16_000, subtype="PCM_16")
        print(f"wrote {sample}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build")
    parser.add_argument("--assets", type=Path, default=ROOT / "assets")
    parser.add_argument("--frames", type=int, default=120, help="demo avatar frames")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--clean", action="store_true", help="remove this build's outputs, nothing else")
    steps.add_argument("--rebuild", action="store_true", help="remove this build's outputs, then build")
    args = parser.parse_args()
    if args.clean or args.rebuild:
        clean(args.repository, args.build_dir, args.assets)
    if not args.clean:
        build(args.repository, args.build_dir, args.assets, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
