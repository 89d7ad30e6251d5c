"""Cropping and paste-back of the SyncTalk_2D "328" models, and JPEG encoding.

A crop square (x1, y1, x2, y2) of the frame is resized to 328x328 (bicubic); the network sees
and regenerates its inner 320x320. Pasting puts the generated face into that inner region and
resizes the 328 crop back to the square's size (bicubic); OpenCV's bicubic is the reference's.
The hard paste stops there; the feathered one then blends that square into the frame with
crop.feather_weights().
"""

from functools import lru_cache

import cv2
import numpy as np

from lipsync_server.crop import BORDER, CROP, FEATHERED, HARD, PASTES, feather_weights


def face_input(frame: np.ndarray, rect) -> np.ndarray:
    """The network's 320x320 view of `frame` (any channel order is kept)."""
    x1, y1, x2, y2 = (int(v) for v in rect)
    crop = cv2.resize(frame[y1:y2, x1:x2], (CROP, CROP), interpolation=cv2.INTER_CUBIC)
    return crop[BORDER:-BORDER, BORDER:-BORDER]


def paste_face(frame: np.ndarray, rect, face: np.ndarray, paste: str = FEATHERED) -> np.ndarray:
    """A copy of `frame` with the generated 320x320 `face` (same channel order) pasted in."""
    x1, y1, x2, y2 = (int(v) for v in rect)
    crop = cv2.resize(frame[y1:y2, x1:x2], (CROP, CROP), interpolation=cv2.INTER_CUBIC)
    crop[BORDER:-BORDER, BORDER:-BORDER] = face
    square = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_CUBIC)
    out = frame.copy()
    if paste == HARD:
        out[y1:y2, x1:x2] = square
    elif paste == FEATHERED:
        original = frame[y1:y2, x1:x2].astype(np.float32)
        blended = original + _feather_mask(x2 - x1, y2 - y1) * (square.astype(np.float32) - original)
        out[y1:y2, x1:x2] = np.rint(blended)
    else:
        raise ValueError(f"paste {paste[:16]!r}: not one of {', '.join(PASTES)}")
    return out


@lru_cache(maxsize=256)  # squares of one avatar vary by a few pixels: a few dozen sizes
def _feather_mask(width: int, height: int) -> np.ndarray:
    mask = np.outer(feather_weights(height), feather_weights(width)).astype(np.float32)[..., None]
    mask.flags.writeable = False
    return mask


def scaled_rect(rect, frame_size: tuple[int, int], size: tuple[int, int] | None):
    """The crop square `rect` of a frame of `frame_size` in that frame scaled to `size` (None:
    unscaled), its corners rounded to the nearest pixel."""
    if size is None:
        return rect
    sx, sy = size[0] / frame_size[0], size[1] / frame_size[1]
    x1, y1, x2, y2 = (int(v) for v in rect)
    return (
        round(x1 * sx),
        round(y1 * sy),
        max(round(x2 * sx), round(x1 * sx) + 1),
        max(round(y2 * sy), round(y1 * sy) + 1),
    )


def encode_jpeg(frame_rgb: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG with 4:2:0 chroma, byte for byte what Pillow writes (both run libjpeg-turbo
    with its standard tables); OpenCV's encoder takes the array directly, about a third faster."""
    done, data = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not done:
        raise ValueError(f"JPEG encoding failed for a {frame_rgb.shape} {frame_rgb.dtype} frame")
    return data.tobytes()


def check_rect(rect, width: int, height: int) -> None:
    x1, y1, x2, y2 = (int(v) for v in rect)
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f"crop rectangle {[x1, y1, x2, y2]} is not inside the {width}x{height} frame")
