"""Speech-like audio made by the project itself, with no recording: a formant synthesis (a
glottal pulse train through vowel resonances, with syllable and pause rhythm). What measures and
calibrates networks feeds them (quality, quantization, creation's gates, the demo's training)."""

import functools
import math
import operator

import numpy as np
from scipy import signal

NOISE_FLOOR = 0.001  # RMS of the white noise under the speech: about -60 dBFS, as any microphone has
VOWELS = {  # first three formants, Hz
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}


def speech(seconds: float = 4.0, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Speech-like float32 audio in [-1, 1]: syllables of varying vowels, loudness, pitch and
    pauses, over white noise (NOISE_FLOOR)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    pitch = 120 + 15 * np.sin(2 * np.pi * 0.7 * t) + 5 * np.sin(2 * np.pi * 5 * t)
    phase = np.cumsum(pitch / rate)
    pulses = np.diff(np.floor(phase), prepend=0.0) + 0.02 * rng.standard_normal(n)
    # Glottal spectral tilt: real voices fall about 12 dB per octave above a few hundred Hz.
    tilt = math.exp(-2 * math.pi * 150 / rate)
    pulses = signal.lfilter([1 - tilt], [1, -tilt], signal.lfilter([1 - tilt], [1, -tilt], pulses))
    out = np.zeros(n)
    position = int(0.25 * rate)
    while position < n - int(0.25 * rate):
        length = int(rng.uniform(0.12, 0.3) * rate)
        formants = VOWELS[rng.choice(list(VOWELS))]
        segment = pulses[position : position + length]
        voiced = functools.reduce(operator.add, (_resonator(segment, f, 80 + f / 20, rate) for f in formants))
        window = np.hanning(len(voiced))
        loudness = rng.uniform(0.35, 1.0)
        out[position : position + len(voiced)] += loudness * voiced * window
        position += length + int(rng.choice([0.03, 0.05, 0.08, 0.4, 0.8], p=[0.35, 0.3, 0.2, 0.1, 0.05]) * rate)
    out = 0.8 * out / (np.abs(out).max() + 1e-9)
    return (out + NOISE_FLOOR * rng.standard_normal(n)).astype(np.float32)


def speech_with_pause(before: float, pause: float, after: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Two phrases of speech() with `pause` seconds of silence (the noise floor) between them."""
    silence = NOISE_FLOOR * np.random.default_rng(seed).standard_normal(int(pause * rate))
    parts = [speech(before, rate, seed), silence.astype(np.float32), speech(after, rate, seed + 1)]
    return np.concatenate(parts)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, rate: int) -> np.ndarray:
    r = math.exp(-math.pi * bandwidth / rate)
    theta = 2 * math.pi * freq / rate
    return signal.lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], x)
