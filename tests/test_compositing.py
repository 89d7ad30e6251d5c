"""Crop and paste geometry of the "328" models, and the avatar's frame loop."""

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lipsync import framing
from lipsync_server.avatars import compositing

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


def test_paste_keeps_the_crop_border_ring():
    frame = np.random.default_rng(2).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    rect = (0, 0, 164, 164)  # scale 0.5: the 328 crop's 4-pixel ring becomes 2 pixels
    out = compositing.paste_face(frame, rect, np.zeros((320, 320, 3), np.uint8))
    crop = cv2.resize(frame[0:164, 0:164], (328, 328), interpolation=cv2.INTER_CUBIC)
    crop[4:324, 4:324] = 0
    assert np.array_equal(out[0:164, 0:164], cv2.resize(crop, (164, 164), interpolation=cv2.INTER_CUBIC))


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
