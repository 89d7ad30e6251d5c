"""The pasted face's edge in served frames: the demo avatar's frames are pasted feathered (the
default) and their edge does not show, where the reference's hard paste of the same faces
shows it. (An avatar imported with --paste hard is served as the reference renders it, hard:
tests/test_parity.py.)"""

import io

import numpy as np
import pytest
from PIL import Image

from lipsync.client import LipsyncClient
from lipsync_server import crop
from lipsync_server.avatars import compositing, seam

pytestmark = pytest.mark.integration


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def pixels(raw: np.ndarray) -> np.ndarray:
    """The network's float BGR output as the compositor receives it (exported.ServingUNet)."""
    return np.clip(np.floor(raw * 255.0), 0, 255).astype(np.uint8)[::-1].transpose(1, 2, 0)


def test_served_frames_show_no_edge_where_a_hard_paste_would(grpc_url, speech, demo_media):
    client = LipsyncClient(grpc_url)
    audio = speech[0][:32000]
    frames = [decode(j) for j in client.render(audio, 16000, "demo")]
    faces = client.render_faces(audio, 16000, "demo")
    assert demo_media.paste == crop.FEATHERED
    served, hard = [], []
    for index, (frame, face) in enumerate(zip(frames, faces)):
        background, rect = demo_media.background(index), demo_media.rects[index]
        feathered = compositing.paste_face(background, rect, pixels(face))
        # The server pasted feathered: its frame is this one, but for JPEG.
        assert np.abs(frame.astype(int) - feathered).mean() < 2
        served.append(seam.seam_ratio(frame, rect))
        hard.append(seam.seam_ratio(compositing.paste_face(background, rect, pixels(face), crop.HARD), rect))
    assert np.median(served) < 1.5
    assert np.median(hard) > np.median(served) + 0.3
