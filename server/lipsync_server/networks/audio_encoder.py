"""The shared "AVE" audio encoder: one 1x80x16 mel window -> a 512-vector.

Module names follow SyncTalk_2D's released checkpoint, whose file holds the bare
Sequential's state_dict (`0.conv_block.0.weight`, ...): load it into `.audio_encoder`.
"""

from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Conv + BatchNorm (+ the input when residual) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int, stride, padding: int, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class AudioEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.audio_encoder = nn.Sequential(
            ConvBlock(1, 32, 3, 1, 1),
            ConvBlock(32, 32, 3, 1, 1, residual=True),
            ConvBlock(32, 32, 3, 1, 1, residual=True),
            ConvBlock(32, 64, 3, (3, 1), 1),
            ConvBlock(64, 64, 3, 1, 1, residual=True),
            ConvBlock(64, 64, 3, 1, 1, residual=True),
            ConvBlock(64, 128, 3, 3, 1),
            ConvBlock(128, 128, 3, 1, 1, residual=True),
            ConvBlock(128, 128, 3, 1, 1, residual=True),
            ConvBlock(128, 256, 3, (3, 2), 1),
            ConvBlock(256, 256, 3, 1, 1, residual=True),
            ConvBlock(256, 512, 3, 1, 0),
            ConvBlock(512, 512, 1, 1, 0),
        )

    def forward(self, mel_windows: Tensor) -> Tensor:
        """[N, 1, 80, 16] -> [N, 512]"""
        return self.audio_encoder(mel_windows).flatten(1)
