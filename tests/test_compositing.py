"""Crop and paste geometry of the "328" models, and the avatar's frame loop."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lipsync_protocol import framing
from lipsync_server import crop
from lipsync_server.avatars import compositing, seam

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def frame():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)


def test_paste_changes_only_the_crop_rectangle(frame):
    rect = (50, 20, 130, 100)  # 80x80 square
    face = np.full((320, 320, 3), 7, np.uint8)
    out = compositing.paste_face(frame, rect, face)
    outside = np.ones(frame.shape[:2], bool)
    outside[20:100, 50:130] = False
    assert np.array_equal(out[outside], frame[outside])
    assert out.shape == frame.shape and not np.array_equal(out[20:100, 50:130], frame[20:100, 50:130])
    # The middle of the square shows the pasted face (resize blurs only near the inner border).
    assert np.abs(out[40:80, 70:110].astype(int) - 7).max() <= 2


def test_the_hard_paste_keeps_the_crop_border_ring():
    frame = np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    rect = (0, 0, 164, 164)  # scale 0.5: the 328 crop's 4-pixel ring becomes 2 pixels
    out = compositing.paste_face(frame, rect, np.zeros((320, 320, 3), np.uint8), crop.HARD)
    square = cv2.resize(frame[0:164, 0:164], (328, 328), interpolation=cv2.INTER_CUBIC)
    square[4:324, 4:324] = 0
    assert np.array_equal(out[0:164, 0:164], cv2.resize(square, (164, 164), interpolation=cv2.INTER_CUBIC))


def test_face_input_is_inner_320_of_bicubic_328(frame):
    rect = (10, 10, 110, 110)
    crop = cv2.resize(frame[10:110, 10:110], (328, 328), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(compositing.face_input(frame, rect), crop[4:324, 4:324])


def test_check_rect_rejects_outside_or_empty():
    with pytest.raises(ValueError, match="not inside"):
        compositing.check_rect((100, 0, 250, 150), 200, 120)
    with pytest.raises(ValueError, match="not inside"):
        compositing.check_rect((10, 10, 10, 40), 200, 120)


def test_jpeg_encoding_quality(frame):
    big = compositing.encode_jpeg(frame, 95)
    small = compositing.encode_jpeg(frame, 30)
    assert len(small) < len(big)
    assert Image.open(io.BytesIO(big)).size == (200, 120)


def test_pingpong_walks_forward_then_back():
    assert [framing.pingpong(i, 4) for i in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [framing.pingpong(i, 1) for i in range(3)] == [0, 0, 0]
    assert framing.pingpong(10**12, 4) == framing.pingpong(10**12 % 6, 4)


def test_frames_are_standard_jpeg_as_pillow_writes_them():
    """The compositor's encoder is OpenCV's, for speed: its frames are the very bytes Pillow
    writes at the same quality, so any JPEG reader (browsers, PyAV, Pillow) takes them."""
    frame = np.asarray(Image.open(ROOT / "docs" / "demo-frame.png").convert("RGB"))[:360, :640].copy()
    for quality in (75, 95):
        ours = compositing.encode_jpeg(frame, quality)
        pillows = io.BytesIO()
        Image.fromarray(frame).save(pillows, format="JPEG", quality=quality)
        assert ours == pillows.getvalue()
        with Image.open(io.BytesIO(ours)) as decoded:
            assert decoded.format == "JPEG" and decoded.size == frame.shape[1::-1] and decoded.mode == "RGB"


def shaded_frame() -> np.ndarray:
    """A smooth picture (a face's shading has no edges of its own where the paste's are)."""
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    base = 120 + 40 * np.sin(x / 37) + 30 * np.cos(y / 29)
    return np.clip(np.stack([base, base * 0.8, base * 0.6], -1), 0, 255).astype(np.uint8)


def test_the_feathered_paste_hides_the_edge_the_hard_paste_shows():
    frame, rect = shaded_frame(), (80, 40, 240, 200)
    # A face generated a few levels too bright, as a network's is: the hard paste's edge shows.
    face = np.clip(compositing.face_input(frame, rect).astype(int) + 12, 0, 255).astype(np.uint8)
    hard = compositing.paste_face(frame, rect, face, crop.HARD)
    feathered = compositing.paste_face(frame, rect, face)  # the default
    assert seam.seam_ratio(frame, rect) < 1.5  # the measure on the untouched picture
    assert seam.seam_ratio(hard, rect) > 3
    assert seam.seam_ratio(feathered, rect) < 1.5
    # The middle is the generated face either way; outside the generated region, the frame.
    assert np.array_equal(feathered[90:150, 130:190], hard[90:150, 130:190])
    inset = round(crop.BORDER * 160 / crop.CROP)
    ring = np.ones(frame.shape[:2], bool)
    ring[40 + inset : 200 - inset, 80 + inset : 240 - inset] = False
    assert np.array_equal(feathered[ring], frame[ring])


def test_an_unknown_paste_is_refused(frame):
    with pytest.raises(ValueError, match="paste 'soft': not one of feathered, hard"):
        compositing.paste_face(frame, (10, 10, 110, 110), np.zeros((320, 320, 3), np.uint8), "soft")
