"""The per-person SyncTalk_2D "328" UNet with the "ave" audio branch.

Inputs: face [B, 6, 320, 320] in [0, 1], BGR (real crop, then the same crop with the mouth
area blacked out) and audio [B, 32, 16, 16]; output [B, 3, 320, 320] after a sigmoid, BGR.
Module names (`audio_model`, `fuse_conv`, `inc`, `down1..5`, `up1..5`, `outc`) match the
checkpoints, so a trained `<epoch>.pth` loads with `load_state_dict`.

`base_channels` sets the width: 32 is the reference network; the demo avatar is trained at 8
(a quarter of the width, a sixteenth of the weights) to fit a CPU training budget. The audio
input keeps its 32 channels at any width.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REFERENCE_WIDTH = 32
AUDIO_CHANNELS = 32  # 16 encoder vectors of 512 seen as 32 x 16 x 16


def channels(base: int) -> tuple[int, ...]:
    """Channels of the five resolution levels for a network whose first level has `base`."""
    return tuple(base * factor for factor in (1, 2, 4, 8, 16))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project."""

    def __init__(self, cin: int, cout: int, stride: int, residual: bool, expand: int = 2):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = residual
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class DoubleConvDW(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.double_conv = nn.Sequential(
            InvertedResidual(cin, cout, stride, residual=False),
            InvertedResidual(cout, cout, 1, residual=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.double_conv(x)


class InConvDw(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.inconv = nn.Sequential(InvertedResidual(cin, cout, 1, residual=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.inconv(x)


class Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.maxpool_conv = nn.Sequential(DoubleConvDW(cin, cout, stride=2))

    def forward(self, x: Tensor) -> Tensor:
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConvDW(cin, cout, stride=1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        dy, dx = skip.shape[2] - x.shape[2], skip.shape[3] - x.shape[3]
        x = F.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        return self.conv(torch.cat([x, skip], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class AudioConvAve(nn.Module):
    """32x16x16 encoder-vector window -> c[4] x 10 x 10, the bottleneck's size."""

    def __init__(self, c: tuple[int, ...]):
        super().__init__()
        self.conv1 = InvertedResidual(AUDIO_CHANNELS, c[1], 1, residual=False)
        self.conv2 = InvertedResidual(c[1], c[2], 1, residual=False)
        self.conv3 = nn.Conv2d(c[2], c[3], kernel_size=3, padding=1, stride=1)
        self.bn3 = nn.BatchNorm2d(c[3])
        self.conv4 = InvertedResidual(c[3], c[3], 1, residual=True)
        self.conv5 = nn.Conv2d(c[3], c[4], kernel_size=3, padding=3, stride=2)
        self.bn5 = nn.BatchNorm2d(c[4])
        self.relu = nn.ReLU()
        self.conv6 = InvertedResidual(c[4], c[4], 1, residual=True)
        self.conv7 = InvertedResidual(c[4], c[4], 1, residual=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv2(self.conv1(x))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.conv4(x)
        x = self.relu(self.bn5(self.conv5(x)))
        return self.conv7(self.conv6(x))


class LipSyncUNet(nn.Module):
    def __init__(self, base_channels: int = REFERENCE_WIDTH):
        super().__init__()
        c = channels(base_channels)
        self.base_channels = base_channels
        self.audio_model = AudioConvAve(c)
        self.fuse_conv = nn.Sequential(DoubleConvDW(c[4] * 2, c[4], stride=1), DoubleConvDW(c[4], c[3], stride=1))
        self.inc = InConvDw(6, c[0])
        self.down1 = Down(c[0], c[0])
        self.down2 = Down(c[0], c[1])
        self.down3 = Down(c[1], c[2])
        self.down4 = Down(c[2], c[3])
        self.down5 = Down(c[3], c[4])
        self.up1 = Up(c[4], c[3] // 2)
        self.up2 = Up(c[3], c[2] // 2)
        self.up3 = Up(c[2], c[1] // 2)
        self.up4 = Up(c[1], c[0])
        self.up5 = Up(c[1], c[0] // 2)
        self.outc = OutConv(c[0] // 2, 3)

    def forward(self, face: Tensor, audio: Tensor) -> Tensor:
        x1 = self.inc(face)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x6 = self.down5(x5)
        x6 = self.fuse_conv(torch.cat([x6, self.audio_model(audio)], dim=1))
        x = self.up1(x6, x5)
        x = self.up2(x, x4)
        x = self.up3(x, x3)
        x = self.up4(x, x2)
        x = self.up5(x, x1)
        return torch.sigmoid(self.outc(x))
