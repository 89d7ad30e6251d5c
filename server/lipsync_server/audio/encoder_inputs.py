"""What the audio encoder takes besides the mel: where each of its windows starts.

request_validator computes them for every request (the reference's rounding rule, in
lipsync_protocol.framing), so that the encoder graph's output shape follows from its inputs' shapes.
"""

import numpy as np

from lipsync_protocol import framing


def encoder_inputs(mel: np.ndarray, mel_offset: int = 0) -> dict[str, np.ndarray]:
    """MEL [1, T, 80] and WINDOW_STARTS [1, N] for a mel [T, 80]; a stream's segment that starts
    `mel_offset` mel frames in (a multiple of 16) has the windows that the whole stream has there."""
    return {"MEL": mel[None].astype(np.float32, copy=False), "WINDOW_STARTS": window_starts(mel.shape[0], mel_offset)}


def window_starts(mel_frames: int, mel_offset: int = 0) -> np.ndarray:
    return np.array([framing.window_starts(mel_frames, mel_offset)], np.int64)
