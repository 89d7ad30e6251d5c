"""Band-limits audio above 16 kHz before DALI resamples it to 16 kHz.

DALI's audio_resample (2.4) does not low-pass when it downsamples: a 20 kHz tone at 48 kHz comes
out at full amplitude, folded to 4 kHz, and a microphone's noise floor at 44.1/48 kHz lifts the
quiet mel bins by up to 6 dB against the reference's librosa/soxr resampling. A linear-phase
Kaiser FIR (scipy) removes everything from 8 kHz up first; its passband reaches 7.8 kHz, above
the mel's top band edge (7.6 kHz), so the mel keeps the reference's values.
"""

import functools

import numpy as np
from scipy import signal

from lipsync_protocol import framing

PASS_HZ, STOP_HZ = 7800.0, 8000.0
ATTENUATION_DB = 90.0


def band_limit(audio: np.ndarray, rate: int) -> np.ndarray:
    """`audio` (float32, 1-D) without content the 16 kHz output cannot hold; same length and
    timing (zero-phase 'same' convolution). Audio at 16 kHz or below is returned as it is."""
    if rate <= framing.SAMPLE_RATE:
        return audio
    return signal.oaconvolve(audio, _taps(rate), mode="same").astype(np.float32)


@functools.lru_cache(maxsize=16)
def _taps(rate: int) -> np.ndarray:
    count, beta = signal.kaiserord(ATTENUATION_DB, (STOP_HZ - PASS_HZ) / (0.5 * rate))
    return signal.firwin(count | 1, (PASS_HZ + STOP_HZ) / 2, window=("kaiser", beta), fs=rate).astype(np.float32)
