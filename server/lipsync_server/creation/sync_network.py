"""SyncTalk_2D's per-person sync network, small enough for a CPU: it scores whether a mouth and a
frame's audio features belong together (1: in sync, 0: not).

It is trained first, on the person's training frames: a mouth with its own frame's features is
in sync, with the features of a frame at least MIN_OFFSET frames away it is not (binary
cross-entropy on the cosine of the two embeddings, as SyncTalk_2D's syncnet). Then training.py
uses it as a loss (a generated mouth should score as in sync with its features) and the quality
gates report its score on the held-out generated mouths against the real ones'.

Its input is the mouth's box (the median over the training frames, dataset.py) out of the
network's 320x320 view, resized to MOUTH_SIZE: in SyncTalk_2D's crop the mouth is in the upper
half, not the lower half its own syncnet reads at 328.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import dataset

MOUTH_SIZE = (48, 112)  # height, width
MIN_OFFSET = 5  # frames (0.2 s): an out-of-sync pair's audio is at least this far from its mouth
LEARNING_RATE = 1e-3  # SyncTalk_2D's
BATCH = 16  # SyncTalk_2D's


def _block(inputs: int, outputs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1), nn.BatchNorm2d(outputs), nn.ReLU())


class SyncNetwork(nn.Module):
    def __init__(self, width: int = 16, embedding: int = 64):
        super().__init__()
        self.face = nn.Sequential(
            _block(3, width, 1),
            _block(width, 2 * width, 2),
            _block(2 * width, 4 * width, 2),
            _block(4 * width, 8 * width, 2),
            _block(8 * width, 8 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8 * width, embedding),
        )
        self.audio = nn.Sequential(  # the encoder's [32, 16, 16] features of one frame
            _block(32, 4 * width, 1),
            _block(4 * width, 8 * width, 2),
            _block(8 * width, 8 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8 * width, embedding),
        )

    def forward(self, mouths: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """[B] in (0, 1): the cosine of the (non-negative) embeddings."""
        face = F.normalize(F.relu(self.face(mouths)), dim=1)
        audio = F.normalize(F.relu(self.audio(features)), dim=1)
        return (face * audio).sum(1).clamp(1e-6, 1 - 1e-6)


def mouth_box(info: dataset.DatasetInfo) -> tuple[int, int, int, int]:
    """The box the network reads (DatasetInfo.mouth_box())."""
    box = info.mouth_box()
    if box is None:
        raise ValueError("no training frame has a tracked mouth")
    return box


def mouths(faces: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """[B, 3, *MOUTH_SIZE] out of [B, 3, 320, 320] faces (differentiable: the loss goes through)."""
    x1, y1, x2, y2 = box
    return F.interpolate(faces[:, :, y1:y2, x1:x2], size=MOUTH_SIZE, mode="bilinear", align_corners=False)


def sync_loss(network: SyncNetwork, faces: torch.Tensor, box, features: torch.Tensor) -> torch.Tensor:
    """How far generated faces are from scoring in sync with their features (BCE against 1)."""
    return F.binary_cross_entropy(network(mouths(faces, box), features), torch.ones(len(faces), device=faces.device))


def train(
    work: Path,
    features: np.ndarray,
    steps: int,
    seed: int,
    read_faces: Callable[[list[int]], torch.Tensor],
    progress: Callable[[int, int, float], None] = lambda step, steps, loss: None,
) -> SyncNetwork:
    """The person's sync network (also in work/train/sync.pth, reused when there). Seeded: a run
    stopped before it finished trains it again to the same weights."""
    path = work / "train" / "sync.pth"
    torch.manual_seed(seed)  # before the weights are drawn
    network = SyncNetwork()
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if saved["settings"] != [steps, seed]:
            raise ValueError(f"{path} was trained with other settings: move it away to start again")
        network.load_state_dict(saved["network"])
        return network.eval()
    info = dataset.read(work)
    frames = np.array(info.training_frames())
    box = mouth_box(info)
    sampler = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    windows = torch.from_numpy(features)
    network.train()
    for step in range(1, steps + 1):
        chosen = frames[torch.randint(len(frames), (BATCH,), generator=sampler).numpy()]
        in_sync = torch.arange(BATCH) % 2 == 0
        shifts = torch.randint(MIN_OFFSET, max(len(frames) // 2, MIN_OFFSET + 1), (BATCH,), generator=sampler)
        others = frames[(np.searchsorted(frames, chosen) + shifts.numpy()) % len(frames)]
        audio_frames = np.where(in_sync.numpy(), chosen, others)
        scores = network(mouths(read_faces(chosen.tolist()), box), windows[audio_frames])
        loss = F.binary_cross_entropy(scores, in_sync.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        progress(step, steps, loss.item())
    network.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"settings": [steps, seed], "network": network.state_dict()}, path)
    return network
