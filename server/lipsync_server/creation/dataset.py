"""A person's video as training material, in two layouts side by side in the creation's work
folder:

- the project's own: `faces/<n>.png`, the network's 320x320 view (BGR) of every usable frame,
  read a batch at a time while training (memory stays bounded); `aud.wav`, the whole sound at
  16 kHz; `dataset.json`, every frame's status (why a frame is left out) and crop rectangle,
  and where the held-out part begins;
- SyncTalk_2D's, in `synctalk/` (its own training scripts read it): `full_body_img/<n>.jpg`,
  `landmarks/<n>.lms` and `aud.wav`, the usable frames of the training part, runs of them put
  end to end with their sound.

The last HELD_OUT share of the video is never trained on: the quality gates check it.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import soundfile

from lipsync_protocol import framing
from lipsync_server.avatars import compositing
from lipsync_server.crop import BORDER, CROP, FACE

from . import crop_track, landmarks110

HELD_OUT = 0.15
JPEG_QUALITY = 95
OUTSIDE = "crop outside the frame"


@dataclass
class DatasetInfo:
    frame_count: int
    held_out_from: int  # the first frame of the held-out part
    status: list[str]  # per frame: crop_track.OK or why it is left out
    rects: list[list[int] | None]  # per frame: [x1, y1, x2, y2] of its crop, None if left out
    mouths: list[list[int] | None]  # per usable frame: the lips' box in the network's 320x320 view
    width: int
    height: int

    @property
    def usable(self) -> list[int]:
        return [n for n, status in enumerate(self.status) if status == crop_track.OK]

    def training_frames(self) -> list[int]:
        return [n for n in self.usable if n < self.held_out_from]

    def held_out_frames(self) -> list[int]:
        return [n for n in self.usable if n >= self.held_out_from]

    def mouth_box(self) -> tuple[int, int, int, int] | None:
        """The mouth's box in the network's view: the median over the training frames (None:
        no training frame has one)."""
        boxes = [self.mouths[n] for n in self.training_frames() if self.mouths[n] is not None]
        if not boxes:
            return None
        x1, y1, x2, y2 = (int(v) for v in np.median(np.array(boxes), axis=0))
        return x1, y1, x2, y2

    def left_out(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.status:
            if status != crop_track.OK:
                counts[status] = counts.get(status, 0) + 1
        return counts


def held_out_from(frame_count: int) -> int:
    return frame_count - max(1, round(frame_count * HELD_OUT))


class DatasetWriter:
    """Takes the video's frames one at a time, with their tracked points, and writes both layouts."""

    def __init__(self, folder: Path, frame_count: int, audio: np.ndarray):
        self.folder = folder
        self.frame_count, self.audio = frame_count, audio
        self.held_out_from = held_out_from(frame_count)
        self.crops: list[crop_track.FrameCrop] = []
        self.points: list[np.ndarray | None] = []
        self.shape = (0, 0)
        for sub in ("faces", "frames"):
            (folder / sub).mkdir(parents=True, exist_ok=True)

    def add(self, rgb: np.ndarray, crop: crop_track.FrameCrop, points: np.ndarray | None) -> None:
        """One frame: kept whole (JPEG) until its smoothed crop is known."""
        n = len(self.crops)
        self.shape = (rgb.shape[0], rgb.shape[1])
        cv2.imwrite(str(self.folder / "frames" / f"{n}.jpg"), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        self.crops.append(crop)
        self.points.append(None if points is None else points[:, :2].astype(np.float32))

    def finish(self) -> DatasetInfo:
        rects = crop_track.smooth(self.crops)
        height, width = self.shape
        status = [crop.status for crop in self.crops]
        for n, rect in enumerate(rects):
            if rect is not None and (rect[0] < 0 or rect[1] < 0 or rect[2] > width or rect[3] > height):
                status[n], rects[n] = OUTSIDE, None
        mouths = [None if rect is None else _mouth_box(self.points[n], rect) for n, rect in enumerate(rects)]
        info = DatasetInfo(len(self.crops), self.held_out_from, status, rects, mouths, width, height)
        for n in info.usable:
            frame = cv2.imread(str(self.folder / "frames" / f"{n}.jpg"))
            cv2.imwrite(str(self.folder / "faces" / f"{n}.png"), compositing.face_input(frame, rects[n]))
        soundfile.write(self.folder / "aud.wav", self.audio, framing.SAMPLE_RATE, subtype="PCM_16")
        self._write_synctalk(info)
        (self.folder / "dataset.json").write_text(json.dumps(asdict(info)))
        return info

    def _write_synctalk(self, info: DatasetInfo) -> None:
        out = self.folder / "synctalk"
        (out / "full_body_img").mkdir(parents=True, exist_ok=True)
        (out / "landmarks").mkdir(exist_ok=True)
        sound = []
        for new, n in enumerate(info.training_frames()):
            (out / "full_body_img" / f"{new}.jpg").write_bytes((self.folder / "frames" / f"{n}.jpg").read_bytes())
            points, rect = self.points[n], info.rects[n]
            assert points is not None and rect is not None  # a usable frame has both
            lms = landmarks110.from_mesh(points, rect)
            (out / "landmarks" / f"{new}.lms").write_text("\n".join(f"{x:.1f} {y:.1f}" for x, y in lms))
            sound.append(self.audio[n * framing.SAMPLES_PER_FRAME : (n + 1) * framing.SAMPLES_PER_FRAME])
        if sound:
            soundfile.write(out / "aud.wav", np.concatenate(sound), framing.SAMPLE_RATE, subtype="PCM_16")


def _mouth_box(points: np.ndarray | None, rect: list[int]) -> list[int] | None:
    """The outer lips' box, grown by a quarter of its size, in the network's view of the crop."""
    if points is None:
        return None
    lips = points[landmarks110.OUTER_LIPS]
    scale = CROP / (rect[2] - rect[0])
    low = (lips.min(axis=0) - rect[:2]) * scale - BORDER
    high = (lips.max(axis=0) - rect[:2]) * scale - BORDER
    grow = (high - low) / 4
    box = np.clip(np.concatenate([low - grow, high + grow]), 0, FACE)
    return [int(v) for v in box]


def read(folder: Path) -> DatasetInfo:
    return DatasetInfo(**json.loads((folder / "dataset.json").read_text()))
