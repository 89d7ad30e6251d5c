"""Synthetic demo data made by the project itself: a drawn talking person (its speech is
calibration/voice.py).

No third-party images: the person is drawn with Pillow. The mouth is drawn from a shape per
frame (calibration/mouth_track.py makes it follow the speech); datasets
are written in SyncTalk_2D's layout, so the avatar importer and the trainer read them as they
would a filmed person.
"""

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 1280, 720
HEAD_PERIOD = 120  # frames of one cycle of the slight head motion
JPEG_QUALITY = 95
# The demo avatar's versions: 1 has the reference network's size (untrained: what benchmarks
# measure, a trained one costs the same), 2 the trained narrow network that moves the lips.
BENCHMARK_VERSION, TRAINED_VERSION = 1, 2
CLOSED = (0.0, 0.5)  # (opening, width) of a closed mouth at rest
MOUTH_BELOW_CROP_TOP = 128  # mouth centre: crop centre column, this far below the crop's top
MAX_OPENING_PX, MOUTH_HALF_WIDTH_PX = 26, (30, 42)
DARK_LEVEL = 90  # the mouth's inside is drawn (45, 12, 22); lips (165, 70, 80), skin brighter


def avatar_frames(count: int = 120, seed: int = 0, mouths=None):
    """Yields (RGB frame, crop square) pairs with slight head motion between frames; `mouths`
    gives each frame's (opening, width) in [0, 1] (default: closed)."""
    rng = np.random.default_rng(seed)
    backdrop = _backdrop(rng)
    mouths = [CLOSED] * count if mouths is None else list(mouths)
    for index, (opening, width) in zip(range(count), mouths, strict=True):
        phase = 2 * math.pi * index / HEAD_PERIOD
        cx = WIDTH // 2 + round(8 * math.sin(phase))
        cy = 330 + round(4 * math.sin(2 * phase + 0.7))
        image = Image.fromarray(backdrop.copy())
        draw = ImageDraw.Draw(image)
        _draw_person(draw, cx, cy)
        _draw_mouth(draw, cx, cy + 88, opening, width)
        # Like the landmark rule: jaw-to-jaw width, from below the eyes, square.
        x1, x2 = cx - 105, cx + 105
        y1 = cy - 40
        yield np.asarray(image), (x1, y1, x2, y1 + (x2 - x1))


def mouth_box(rect) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) of the frame that holds the drawn mouth, fully open, of a crop square."""
    cx, cy = (rect[0] + rect[2]) // 2, rect[1] + MOUTH_BELOW_CROP_TOP
    half_w, half_h = MOUTH_HALF_WIDTH_PX[1] + 12, MAX_OPENING_PX // 2 + 12
    return cx - half_w, cy - half_h, cx + half_w, cy + half_h


def dark_area(image: np.ndarray, box) -> int:
    """Pixels of `image` (RGB or BGR) inside `box` dark enough to be the open mouth's inside:
    the measure of mouth opening (lips and skin are far brighter in every channel)."""
    x1, y1, x2, y2 = box
    return int((image[y1:y2, x1:x2].max(axis=2) < DARK_LEVEL).sum())


def write_dataset(folder: Path, frames, audio: np.ndarray | None = None, rate: int = 16_000) -> int:
    """Writes (frame, rect) pairs as a SyncTalk_2D dataset: full_body_img/<n>.jpg,
    landmarks/<n>.lms (110 points; 1, 31 and 52 set the crop) and aud.wav; returns the count."""
    (folder / "full_body_img").mkdir(parents=True, exist_ok=True)
    (folder / "landmarks").mkdir(exist_ok=True)
    count = 0
    for n, (frame, rect) in enumerate(frames):
        Image.fromarray(frame).save(folder / "full_body_img" / f"{n}.jpg", quality=JPEG_QUALITY)
        (folder / "landmarks" / f"{n}.lms").write_text("\n".join(f"{x:.1f} {y:.1f}" for x, y in _landmarks(rect)))
        count = n + 1
    if audio is not None:
        import soundfile  # here, not at the top: perf/gpu_bench.py draws frames where it is absent

        soundfile.write(folder / "aud.wav", audio, rate, subtype="PCM_16")
    return count


def _landmarks(rect) -> np.ndarray:
    """110 points on the drawn face: a jaw contour (0-32) from the crop's left edge to its right,
    the rest on the face's outline; point 52 sits on the crop's top row."""
    x1, y1, x2, _ = rect
    cx, half = (x1 + x2) / 2, (x2 - x1) / 2
    angles = np.linspace(np.pi, 0, 33)
    jaw = np.stack([cx + half * np.cos(angles), y1 + 40 + 120 * np.sin(angles)], axis=1)
    jaw[1, 0], jaw[31, 0] = x1, x2
    angles = np.linspace(0, 2 * np.pi, 110 - 33, endpoint=False)
    outline = np.stack([cx + 0.8 * half * np.cos(angles), y1 + 60 + 100 * np.sin(angles)], axis=1)
    points = np.concatenate([jaw, outline])
    points[52] = (cx, y1)
    return points


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


def _draw_mouth(draw: ImageDraw.ImageDraw, mx: int, my: int, opening: float, width: float) -> None:
    """Lips around a dark opening `opening` * MAX_OPENING_PX high; closed, a lip line."""
    low, high = MOUTH_HALF_WIDTH_PX
    half_w = low + (high - low) * width
    half_h = MAX_OPENING_PX * opening / 2
    draw.ellipse([mx - half_w - 6, my - half_h - 7, mx + half_w + 6, my + half_h + 7], fill=(165, 70, 80))
    if half_h >= 1:
        draw.ellipse([mx - half_w, my - half_h, mx + half_w, my + half_h], fill=(45, 12, 22))
    else:
        draw.line([mx - half_w, my, mx + half_w, my], fill=(110, 40, 50), width=2)
