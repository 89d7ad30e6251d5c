"""Trains a person's UNet on their video's frames (dataset.py) with the project's shared audio
encoder, as SyncTalk_2D trains its per-person network: the target frame masked, a random other
frame as the reference, the frame's audio features; L1, weighted up inside the mouth.

SyncTalk_2D adds two losses. Its sync loss (the person's sync network, sync_network.py) is here
with Plan.sync_weight, 0 by default: measured at 0.05 on the made-up 60 s video, it took the
held-out PSNR from 28.1 to 23.4 dB and the lip sync r from 0.74 to -0.19 (perf/README.md). Its
VGG19 perceptual loss needs ImageNet weights that would have to be downloaded: left out.

Seeded and resumable: every CHECKPOINT_EVERY steps the whole state (weights, optimiser,
schedule, the sampler's random state) goes to train/state.pt, so a run stopped by Ctrl-C or a
crash goes on from there with the result of a run never stopped. Frames are read from disk a
batch at a time.
"""

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from lipsync_server.networks import unet_training
from lipsync_server.networks.unet import LipSyncUNet

from . import dataset, sync_network

CHECKPOINT_EVERY = 50
LEARNING_RATE = 2e-3
SYNC_WEIGHT = 0.0


REFERENCE_WIDTH = 32  # the reference's UNet: what a GPU trains in minutes
CPU_WIDTH = 8  # a CPU's: the reference's would take most of a day on 2 cores


def default_width(device: str) -> int:
    return REFERENCE_WIDTH if device.startswith("cuda") else CPU_WIDTH


@dataclass
class Plan:
    steps: int = 1000  # about 50 min at width 8 on 2 cores (perf/README.md)
    width: int = CPU_WIDTH  # UNet base channels (default_width: the reference's 32 on a GPU)
    batch: int = 8
    seed: int = 0
    device: str = "cpu"
    sync_steps: int = 300  # the sync network's, trained first (about a minute on 2 cores)
    sync_weight: float = SYNC_WEIGHT  # the sync loss's (0: L1 alone)

    def settings(self) -> list:
        """What a saved state must have been trained with to be resumed."""
        return [self.steps, self.width, self.batch, self.seed, self.sync_steps, self.sync_weight]


def train(
    work: Path,
    plan: Plan,
    features: np.ndarray,
    progress: Callable[[int, int, float], None] = lambda step, steps, loss: None,
    stop_after: int | None = None,
    sync: sync_network.SyncNetwork | None = None,
) -> LipSyncUNet | None:
    """The trained UNet (also in work/train/unet.pth); None when `stop_after` steps of this
    call ended it early (tests: an interruption). `features`: the shared audio encoder's output
    for every frame of the video (encoder_features()); `sync`: the person's sync network
    (train_sync()), needed when plan.sync_weight > 0."""
    if plan.sync_weight > 0 and sync is None:
        raise ValueError("the plan weighs a sync loss: train the sync network first (train_sync)")
    info = dataset.read(work)
    frames = info.training_frames()
    if not frames:
        raise ValueError(f"{work}: no usable frame to train on")
    windows = torch.from_numpy(features)
    device = torch.device(plan.device)
    torch.manual_seed(plan.seed)
    # channels_last: oneDNN's convolutions train about a third faster on a CPU in this layout.
    unet = LipSyncUNet(plan.width).to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(unet.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LEARNING_RATE, total_steps=plan.steps, pct_start=0.15
    )
    sampler = torch.Generator().manual_seed(plan.seed)
    state_path = work / "train" / "state.pt"
    step = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location=device, weights_only=True)
        if state["plan"] != plan.settings():
            raise ValueError(f"{state_path} is a run with other settings: move it away to start again")
        unet.load_state_dict(state["unet"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        sampler.set_state(state["sampler"])
        step = state["step"]
    training = unet_training.Step(unet, unet_training.mouth_weight(info.mouth_box()).to(device))
    if sync is not None:
        sync = sync.to(device).eval().requires_grad_(False)
        box = sync_network.mouth_box(info)
    log = _Log(work / "train" / "log.csv", step)
    unet.train()
    ran = 0
    while step < plan.steps:
        targets = [frames[i] for i in torch.randint(len(frames), (plan.batch,), generator=sampler)]
        references = [frames[i] for i in torch.randint(len(frames), (plan.batch,), generator=sampler)]
        target = read_faces(work, targets).to(device)
        out = training.predict(read_faces(work, references).to(device), target, windows[targets].to(device))
        loss = training.loss(out, target)
        if sync is not None and plan.sync_weight > 0:
            loss = loss + plan.sync_weight * sync_network.sync_loss(sync, out, box, windows[targets].to(device))
        unet_training.descend(loss, optimizer, schedule)
        step, ran = step + 1, ran + 1
        log.write(step, loss.item())
        progress(step, plan.steps, loss.item())
        if step % CHECKPOINT_EVERY == 0 or step == plan.steps:
            _save_state(state_path, step, plan, unet, optimizer, schedule, sampler)
        if stop_after is not None and ran == stop_after and step < plan.steps:
            return None
    unet = unet.cpu().to(memory_format=torch.contiguous_format).eval()
    torch.save(unet.state_dict(), work / "train" / "unet.pth")
    return unet


def train_sync(
    work: Path,
    plan: Plan,
    features: np.ndarray,
    progress: Callable[[int, int, float], None] = lambda step, steps, loss: None,
) -> sync_network.SyncNetwork:
    """The person's sync network for this plan (work/train/sync.pth once trained)."""
    return sync_network.train(
        work, features, plan.sync_steps, plan.seed, lambda numbers: read_faces(work, numbers), progress
    )


def read_faces(work: Path, numbers: list[int]) -> torch.Tensor:
    """[B, 3, 320, 320] float in [0, 1], BGR, read from faces/<n>.png."""
    images = [cv2.imread(str(work / "faces" / f"{n}.png")) for n in numbers]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def encoder_features(work: Path, repository: Path) -> np.ndarray:
    """[frame_count, 32, 16, 16]: what the repository's audio encoder (the served version)
    makes of the video's sound, as the server computes it."""
    import soundfile

    from lipsync_server.avatars import quality
    from lipsync_server.avatars import repository as repo

    audio, _ = soundfile.read(work / "aud.wav", dtype="float32")
    return quality.audio_features(repo.latest_encoder(repository), audio)


def _save_state(path: Path, step: int, plan: Plan, unet, optimizer, schedule, sampler) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "plan": plan.settings(),
        "unet": unet.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "sampler": sampler.get_state(),
    }
    staging = path.with_suffix(".part")
    torch.save(state, staging)
    staging.replace(path)  # a crash while saving leaves the last whole state


class _Log:
    """train/log.csv: step, loss, seconds since this run started; a resumed run drops the rows
    after the state it resumes from (steps it makes again)."""

    def __init__(self, path: Path, resumed_at: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_file():
            rows = list(csv.reader(path.read_text().splitlines()))
            kept = rows[:1] + [row for row in rows[1:] if int(row[0]) <= resumed_at]
            path.write_text("".join(",".join(row) + "\n" for row in kept))
        self.new = not path.is_file()
        self.path, self.started = path, time.monotonic()

    def write(self, step: int, loss: float) -> None:
        with self.path.open("a", newline="") as file:
            writer = csv.writer(file)
            if self.new:
                writer.writerow(["step", "loss", "seconds"])
                self.new = False
            writer.writerow([step, f"{loss:.5f}", f"{time.monotonic() - self.started:.1f}"])
