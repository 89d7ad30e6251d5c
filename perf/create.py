"""`make bench-create`: a made-up 60 s talking-head video (30 frames/s, 1280x720, the head swaying)
becomes a served avatar version with `lipsync-server avatar create`'s defaults, against the
issue's targets: end to end within 60 minutes at the narrow width, face tracking at 25 frames/s
or more, the created avatar's mouth following held-out speech (r at least 0.9 of the real
frames') and closed in pauses;
then a short training run stopped halfway and resumed, against the same run never stopped.

Report: out/bench-create/report.md and report.json; it names the CPU.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from lipsync_server import crop
from lipsync_server.avatars import compositing, seam
from lipsync_server.creation import create, dataset, face_models, quality_gates, training
from lipsync_server.demo import talking_head
from lipsync_server.networks import checkpoints
from lipsync_server.networks.exported import face_mask
from lipsync_server.runtimes import cpu_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "bench-create"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the made-up video")
    parser.add_argument("--steps", type=int, default=training.Plan.steps)
    parser.add_argument("--width", type=int, default=training.Plan.width)
    parser.add_argument("--sync-weight", type=float, default=training.Plan.sync_weight, help="0: L1 alone")
    parser.add_argument("--min-seconds", type=float, default=30.0, help="for shorter trial runs")
    parser.add_argument("--resume-steps", type=int, default=20, help="the stopped-and-resumed run's length")
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)  # this benchmark's own output only
    OUT.mkdir(parents=True)
    face_models.fetch()
    began = time.monotonic()
    video = talking_head.write(OUT / "person.mp4", talking_head.Clip(seconds=args.seconds, seed=5))
    video_s = time.monotonic() - began
    repo = OUT / "model_repository"
    shutil.copytree(ROOT / "model_repository" / "audio_encoder", repo / "audio_encoder")
    request = create.Request(
        "person",
        video,
        repo,
        OUT / "work",
        training.Plan(steps=args.steps, width=args.width, sync_weight=args.sync_weight),
        min_seconds=args.min_seconds,
        ignore_gates=True,
    )
    began = time.monotonic()
    result = create.create(request)
    end_to_end_s = time.monotonic() - began
    frames = len(json.loads((request.work / "dataset.json").read_text())["status"])
    figures = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "video_seconds": args.seconds,
        "making_the_video_s": round(video_s, 1),
        "end_to_end_s": round(end_to_end_s, 1),
        "stages_s": {stage: round(s, 1) for stage, s in result.seconds.items()},
        "tracking_fps": round(frames / result.seconds["face tracker"], 1),
        "dataset_fps": round(frames / result.seconds["tracking"], 1),
        "steps": args.steps,
        "width": args.width,
        "sync_weight": args.sync_weight,
        "left_out": result.left_out,
        "gates": result.report.as_dict(),
        "seam": seams(request.work, repo),
        "resume_identical": resumed_equals_straight(request.work, repo, args.resume_steps, args.width),
    }
    (OUT / "report.json").write_text(json.dumps(figures, indent=2) + "\n")
    (OUT / "report.md").write_text(markdown(figures))
    print(markdown(figures))
    return 0


def seams(work: Path, repo: Path, count: int = 40) -> dict:
    """The pasted face's edge (avatars/seam.py) in held-out frames of the created avatar, its
    generated faces pasted hard (the reference's) and feathered (the default): medians."""
    unet = checkpoints.load_unet(work / "train" / "unet.pth").eval()
    features = training.encoder_features(work, repo)
    info = dataset.read(work)
    held_out = info.held_out_frames()[:count]
    mask = face_mask()
    ratios: dict[str, list[float]] = {"video": [], crop.HARD: [], crop.FEATHERED: []}
    for n in held_out:
        out = quality_gates.generated_face(work, unet, features, n, info.training_frames()[0], mask)
        face = np.clip(np.floor(out.permute(1, 2, 0).numpy() * 255), 0, 255).astype(np.uint8)
        frame, rect = cv2.imread(str(work / "frames" / f"{n}.jpg")), info.rects[n]
        ratios["video"].append(seam.seam_ratio(frame, rect))
        for paste in (crop.HARD, crop.FEATHERED):
            ratios[paste].append(seam.seam_ratio(compositing.paste_face(frame, rect, face, paste), rect))
    return {"frames": len(held_out)} | {name: float(np.median(found)) for name, found in ratios.items()}


def resumed_equals_straight(work: Path, repo: Path, steps: int, width: int) -> bool:
    """A run stopped halfway (as by Ctrl-C) and started again, against the same run never stopped."""
    features = training.encoder_features(work, repo)
    plan = training.Plan(steps=steps, width=width, seed=1, sync_steps=20)
    results = []
    for stop in (None, steps // 2 + 1):
        shutil.rmtree(work / "train", ignore_errors=True)
        if stop is not None:
            sync = training.train_sync(work, plan, features)
            assert training.train(work, plan, features, stop_after=stop, sync=sync) is None
        unet = training.train(work, plan, features, sync=training.train_sync(work, plan, features))
        assert unet is not None
        results.append(unet.state_dict())
    return all(torch.equal(results[0][key], results[1][key]) for key in results[0])


def markdown(f: dict) -> str:
    gates = f["gates"]
    rows = [
        (
            f"end to end, a {f['video_seconds']:g} s video to a served version",
            f"{f['end_to_end_s'] / 60:.1f} min",
            "<= 60 min (60 s)",
        ),
        ("stages", ", ".join(f"{k} {v / 60:.1f} min" for k, v in f["stages_s"].items()), ""),
        ("face tracking (detector and mesh on 1280x720)", f"{f['tracking_fps']} frames/s", ">= 25"),
        ("the dataset stage (decoding, tracking, writing both layouts)", f"{f['dataset_fps']} frames/s", ""),
        (
            "training",
            f"{f['steps']} steps of 8 frames at width {f['width']}, sync loss weight {f['sync_weight']:g}",
            "",
        ),
        ("frames left out", f["left_out"] or "none", ""),
        ("held-out reconstruction", f"{gates['psnr_db']:.1f} dB PSNR", ">= 28 (the gate)"),
        (
            "held-out lip sync: mouth opening against the speech level",
            f"r = {gates['sync_r']:.2f}",
            f">= {quality_gates.MIN_SYNC_SHARE * gates['real_sync_r']:.2f} (0.9 x the real frames')",
        ),
        ("the same on the real frames (what r can reach)", f"r = {gates['real_sync_r']:.2f}", ""),
        (
            "the sync network's score, generated / real mouths (real with audio 0.4 s off)",
            f"{gates['sync_score']:.2f} / {gates['real_sync_score']:.2f} ({gates['real_off_sync_score']:.2f})"
            if gates["sync_score"] is not None
            else "no sync network",
            "reported, no bar yet",
        ),
        (
            "mouth opening in pauses, generated / real",
            f"{gates['pause_opening']:.3f} / {gates['real_pause_opening']:.3f}",
            "generated <= real + 0.02",
        ),
        ("gates failed", "; ".join(gates["failed"]) or "none", ""),
        (
            "the pasted face's edge (across / beside; the video's own picture there)",
            f"feathered {f['seam']['feathered']:.2f}, hard {f['seam']['hard']:.2f} ({f['seam']['video']:.2f})",
            "about 1: invisible",
        ),
        (
            "training stopped halfway and resumed, against never stopped",
            "identical" if f["resume_identical"] else "DIFFERENT",
            "identical",
        ),
    ]
    lines = [f"# bench-create: {f['cpu']}, {f['cores']} cores", "", "| figure | measured | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
