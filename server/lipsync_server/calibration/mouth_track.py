"""How wide open the demo person's mouth is in each video frame: a function of the speech.

This is the ground truth of the synthetic training data and what the sync test checks served
frames against. It reads the same mel the server computes (mel_pipeline) with the server's
frame rule: video frame j is rendered around encoder window clamp(j - 1) (framing.py: the
first and last windows are repeated), whose 16 mel frames span 0.2 s. The mouth follows the
window's middle (four mel frames, 50 ms): the mean level of the speech bands gives the opening,
the upper bands' level against the lower ones' the width (spread lips for i/e, round for o/u).
"""

import numpy as np

from lipsync_protocol import framing
from lipsync_server.audio import mel_pipeline

SPEECH_BAND_HZ = (250.0, 4000.0)
LOW_BAND_HZ, HIGH_BAND_HZ = (250.0, 1000.0), (1500.0, 3500.0)
MIDDLE = slice(6, 10)  # mel frames of a window the mouth shows
# Normalised mel level (-4 = -100 dB ... 4) of a closed and of a fully open mouth. Synthetic
# speech at 0.8 peak lies between -3.1 (its noise floor) and about -1.8.
CLOSED_LEVEL, OPEN_LEVEL = -2.9, -1.9
BALANCE_RANGE = (-1.2, 1.0)
SMOOTHING = (0.25, 0.5, 0.25)  # over neighbouring frames: lips move less abruptly than sound


def frame_levels(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(speech-band level, upper minus lower band level) of every video frame's window."""
    bins = _mel_bin_hz()
    speech, low, high = (_between(bins, band) for band in (SPEECH_BAND_HZ, LOW_BAND_HZ, HIGH_BAND_HZ))
    windows = [mel[start:][MIDDLE] for start in framing.window_starts(mel.shape[0])]
    windows = [windows[0], *windows, windows[-1]]  # one video frame per padded encoder vector
    level = np.array([w[:, speech].mean() for w in windows])
    balance = np.array([w[:, high].mean() - w[:, low].mean() for w in windows])
    return level, balance


def mouth_shapes(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(opening, width), each in [0, 1], of every video frame the server renders for the
    audio of this mel (mel_pipeline.mel_of)."""
    level, balance = (_smooth(x) for x in frame_levels(mel))
    opening = np.clip((level - CLOSED_LEVEL) / (OPEN_LEVEL - CLOSED_LEVEL), 0.0, 1.0)
    low, high = BALANCE_RANGE
    width = np.clip((balance - low) / (high - low), 0.0, 1.0)
    return opening, width


def _smooth(values: np.ndarray) -> np.ndarray:
    padded = np.concatenate([values[:1], values, values[-1:]])
    return np.convolve(padded, SMOOTHING, mode="valid")


def _mel_bin_hz() -> np.ndarray:
    import librosa

    edges = librosa.mel_frequencies(framing.N_MELS + 2, fmin=mel_pipeline.FMIN, fmax=mel_pipeline.FMAX)
    return edges[1:-1]  # each slaney filter peaks at its centre


def _between(values: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (values >= band[0]) & (values <= band[1])
