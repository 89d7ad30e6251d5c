"""The graphs that are exported to ONNX (and built into TensorRT plans) for serving.

They wrap the checkpoint networks unchanged and add the per-request arithmetic that the
reference inference does in Python, so that it runs inside the model servers:
- ServingAudioEncoder: mel [1, T, 80] and window starts [1, N] -> per-frame encoder windows
  [1, N + 2, 32, 16, 16];
- ServingUNet: uint8 BGR face crops -> the network's float output, and the same as uint8 RGB
  pixels (what the compositor pastes: a quarter of the bytes to move between processes).
"""

import torch
from torch import Tensor, nn

from lipsync_protocol import framing
from lipsync_server.crop import FACE

from .audio_encoder import AudioEncoder
from .unet import LipSyncUNet

# The reference blacks out cv2.rectangle(x=5, y=5, w=310, h=305): rows 5..309, columns 5..314.
MASK_ROWS = (5, 310)
MASK_COLS = (5, 315)


def face_mask() -> Tensor:
    """[1, 1, 320, 320]: 1 where the masked half of the UNet's input keeps the frame."""
    mask = torch.ones(1, 1, FACE, FACE)
    mask[..., MASK_ROWS[0] : MASK_ROWS[1], MASK_COLS[0] : MASK_COLS[1]] = 0
    return mask


class ServingAudioEncoder(nn.Module):
    """Slices the mel into windows, encodes them and gathers each frame's 16-vector context.

    All of it happens per request (one clip), before frames of different requests are batched.
    Every output dimension follows from the inputs' shapes (TensorRT sizes tensors from shapes
    only): the window count is WINDOW_STARTS' length, computed by request_validator with the
    reference's rounding rule (lipsync_protocol.framing.window_starts).
    """

    window_rows: Tensor

    def __init__(self, encoder: AudioEncoder):
        super().__init__()
        self.encoder = encoder
        self.register_buffer("window_rows", torch.arange(framing.WINDOW, dtype=torch.int64))

    def forward(self, mel: Tensor, window_starts: Tensor) -> Tensor:
        """mel [1, T, 80]; window_starts [1, N]: each window's first mel frame. Starts outside
        the mel are clamped into it, so that no input reads outside it."""
        mel = mel[0]  # [T, 80]
        starts = torch.clamp(window_starts[0], min=0, max=mel.shape[0] - framing.WINDOW)
        rows = starts[:, None] + self.window_rows[None, :]
        windows = mel[rows].transpose(1, 2).unsqueeze(1)  # [N, 1, 80, 16]
        vectors = self.encoder(windows)  # [N, 512]
        zeros = vectors.new_zeros(framing.CONTEXT, vectors.shape[1])
        padded = torch.cat([zeros, vectors[:1], vectors, vectors[-1:], zeros], dim=0)  # [N + 18, 512]
        frames = torch.arange(vectors.shape[0] + 2, dtype=torch.int64)
        context = frames[:, None] + torch.arange(2 * framing.CONTEXT, dtype=torch.int64)[None, :]
        return padded[context].reshape(1, -1, 32, 16, 16)


class ServingUNet(nn.Module):
    """Takes uint8 BGR crops [B, 320, 320, 3]; builds the masked half and scales inside the graph.

    Returns FACE_RAW (float BGR [B, 3, 320, 320], the network's own output) and FACE_RGB (uint8
    RGB [B, 320, 320, 3], truncated as the reference's astype(uint8) does)."""

    mask: Tensor

    def __init__(self, unet: LipSyncUNet):
        super().__init__()
        self.unet = unet
        self.register_buffer("mask", face_mask())

    def forward(self, face: Tensor, audio: Tensor) -> tuple[Tensor, Tensor]:
        # uint8 only where the graph meets the outside: TensorRT takes uint8 network inputs and
        # outputs, never uint8 intermediate tensors. Cast first, cast back last.
        real = face.to(torch.float32).permute(0, 3, 1, 2) / 255.0
        raw = self.unet(torch.cat([real, real * self.mask], dim=1), audio)
        # floor == the reference's truncation for the sigmoid's non-negative output; the clamp
        # keeps the cast defined (ONNX leaves out-of-range float -> uint8 casts unspecified).
        pixels = torch.clamp(torch.floor(raw * 255.0), 0.0, 255.0).flip(1).permute(0, 2, 3, 1)
        return raw, pixels.to(torch.uint8)
