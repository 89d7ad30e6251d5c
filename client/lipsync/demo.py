"""Synthetic demo data made by the project itself: a drawn avatar and speech-like audio.

No third-party images or recordings: the avatar is drawn with Pillow, the speech is a formant
synthesis (a glottal pulse train through vowel resonances, with syllable and pause rhythm).
"""
import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import signal

WIDTH, HEIGHT = 1280, 720


def avatar_frames(count: int = 120, seed: int = 0):
    """Yields (RGB frame, crop square) pairs with slight head motion between frames."""
    rng = np.random.default_rng(seed)
    backdrop = _backdrop(rng)
    for index in range(count):
        phase = 2 * math.pi * index / count
        cx = WIDTH // 2 + round(8 * math.sin(phase))
        cy = 330 + round(4 * math.sin(2 * phase + 0.7))
        image = Image.fromarray(backdrop.copy())
        _draw_person(ImageDraw.Draw(image), cx, cy)
        # Like the landmark rule: jaw-to-jaw width, from below the eyes, square.
        x1, x2 = cx - 105, cx + 105
        y1 = cy - 40
        yield np.asarray(image), (x1, y1, x2, y1 + (x2 - x1))


def _backdrop(rng) -> np.ndarray:
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    x = np.linspace(0, 1, WIDTH)[None, :, None]
    top, bottom = np.array([70, 90, 120]), np.array([30, 40, 60])
    image = top * (1 - y) + bottom * y + 12 * np.sin(6 * x) + rng.normal(0, 2, (HEIGHT, WIDTH, 1))
    return np.clip(image, 0, 255).astype(np.uint8)


def _draw_person(draw: ImageDraw.ImageDraw, cx: int, cy: int) -> None:
    draw.ellipse([cx - 260, cy + 170, cx + 260, cy + 560], fill=(40, 60, 110))  # shoulders
    draw.rectangle([cx - 45, cy + 120, cx + 45, cy + 210], fill=(205, 160, 135))  # neck
    draw.ellipse([cx - 120, cy - 160, cx + 120, cy + 170], fill=(225, 180, 150))  # face
    draw.chord([cx - 128, cy - 175, cx + 128, cy - 10], 180, 360, fill=(60, 40, 30))  # hair
    for side in (-1, 1):
        ex = cx + side * 48
        draw.ellipse([ex - 18, cy - 35, ex + 18, cy - 15], fill=(250, 250, 250))
        draw.ellipse([ex - 8, cy - 32, ex + 8, cy - 17], fill=(60, 40, 30))
        draw.line([ex - 22, cy - 52, ex + 22, cy - 56 + side * 2], fill=(70, 50, 40), width=5)
    draw.polygon([(cx, cy - 10), (cx - 16, cy + 45), (cx + 16, cy + 45)], fill=(205, 150, 125))
    draw.chord([cx - 45, cy + 70, cx + 45, cy + 105], 0, 180, fill=(150, 60, 70))  # closed mouth


VOWELS = {  # first three formants, Hz
    "a": (730, 1090, 2440),
    "e": (530, 1840, 2480),
    "i": (270, 2290, 3010),
    "o": (570, 840, 2410),
    "u": (300, 870, 2240),
}


def speech(seconds: float = 4.0, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """Speech-like float32 audio in [-1, 1]: syllables of varying vowels, pitch and pauses."""
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
        voiced = sum(_resonator(segment, f, 80 + f / 20, rate) for f in formants)
        window = np.hanning(len(voiced))
        out[position : position + len(voiced)] += voiced * window
        position += length + int(rng.choice([0.03, 0.05, 0.08, 0.4], p=[0.4, 0.3, 0.2, 0.1]) * rate)
    out /= np.abs(out).max() + 1e-9
    return (0.8 * out).astype(np.float32)


def _resonator(x: np.ndarray, freq: float, bandwidth: float, rate: int) -> np.ndarray:
    r = math.exp(-math.pi * bandwidth / rate)
    theta = 2 * math.pi * freq / rate
    return signal.lfilter([1 - r], [1, -2 * r * math.cos(theta), r * r], x)
