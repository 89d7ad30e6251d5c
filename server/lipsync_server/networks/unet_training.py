"""One training step of the lip-sync UNet, as SyncTalk_2D trains its per-person network: the
target frame with its lower half masked beside a random other frame of the person in, the target
out, the L1 weighted up on the mouth. The demo's training and avatar creation both take it."""

import torch
from torch import Tensor

from .exported import face_mask
from .unet import LipSyncUNet

MOUTH_WEIGHT = 10.0  # loss weight of mouth pixels against the rest of the face
SIDE = 320  # the network's view of the face


def mouth_weight(box: tuple[int, int, int, int] | None) -> Tensor:
    """[1, 1, 320, 320]: MOUTH_WEIGHT inside the mouth's box (x1, y1, x2, y2), 1 elsewhere."""
    weight = torch.ones(1, 1, SIDE, SIDE)
    if box is not None:
        x1, y1, x2, y2 = box
        weight[..., y1:y2, x1:x2] = MOUTH_WEIGHT
    return weight


class Step:
    """The masked-face forward pass and its weighted L1, for one device."""

    def __init__(self, unet: LipSyncUNet, weight: Tensor):
        device = weight.device
        self.unet, self.weight, self.mask = unet, weight, face_mask().to(device)

    def predict(self, reference: Tensor, target: Tensor, features: Tensor) -> Tensor:
        """The faces made for `target` (float [B, 3, 320, 320] in [0, 1]) from `reference`."""
        face = torch.cat([reference, target * self.mask], dim=1)
        return self.unet(face.contiguous(memory_format=torch.channels_last), features)

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return (self.weight * (out - target).abs()).mean() / self.weight.mean()


def descend(loss: Tensor, optimizer: torch.optim.Optimizer, schedule) -> None:
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
