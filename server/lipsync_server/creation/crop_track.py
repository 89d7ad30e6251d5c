"""The crop square of every frame of a person's video, SyncTalk_2D's geometry from the face mesh,
smoothed over time; and which frames cannot be used, and why.

SyncTalk_2D's crop (its 110-point layout): x from landmark 1 to landmark 31 (the face's sides
just below the eye line), top at landmark 52 (the lower nose bridge), height equal to width. The
face mesh's points at those places are 234 and 454 (the sides, at the cheekbones) and 5 (the
nose bridge just above the tip).
"""

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from .face_tracker import Tracked

SIDE_LEFT, SIDE_RIGHT, NOSE_BRIDGE = 234, 454, 5  # image left, image right
# A face turned further than this is left out: the nose's place between the face's sides,
# 0.5 facing the camera, beyond 0.5 +- this turned (about 30 degrees).
MAX_TURN = 0.2
SMOOTHING_FRAMES = 2.0  # the Gaussian's sigma: landmark jitter averages out, head motion stays

OK, NO_FACE, MORE_FACES, TURNED_AWAY = "ok", "no face", "more than one face", "turned away"


@dataclass
class FrameCrop:
    status: str  # OK or why the frame is left out
    square: np.ndarray | None  # x centre, y centre, side (pixels), before smoothing


def frame_crop(tracked: Tracked) -> FrameCrop:
    """This frame's crop square, or why it has none."""
    if len(tracked.faces) > 1:
        return FrameCrop(MORE_FACES, None)
    points = tracked.points
    if points is None:  # the mesh follows a face the detector may miss in a frame: it decides
        return FrameCrop(NO_FACE, None)
    left, right, bridge = points[SIDE_LEFT, :2], points[SIDE_RIGHT, :2], points[NOSE_BRIDGE, :2]
    side = float(np.linalg.norm(right - left))
    turn = float(np.dot(bridge - left, right - left)) / (side * side) if side > 0 else 0.0
    if side <= 0 or abs(turn - 0.5) > MAX_TURN:
        return FrameCrop(TURNED_AWAY, None)
    width = right[0] - left[0]
    return FrameCrop(OK, np.array([(left[0] + right[0]) / 2, bridge[1] + width / 2, width]))


def smooth(crops: list[FrameCrop]) -> list[list[int] | None]:
    """Each usable frame's crop rectangle [x1, y1, x2, y2] (the importer's form), smoothed over
    each run of consecutive usable frames; None for the others."""
    rects: list[list[int] | None] = [None] * len(crops)
    index = 0
    while index < len(crops):
        if crops[index].status != OK:
            index += 1
            continue
        end = index
        while end < len(crops) and crops[end].status == OK:
            end += 1
        run = np.array([crop.square for crop in crops[index:end]])
        run = gaussian_filter1d(run, SMOOTHING_FRAMES, axis=0, mode="nearest")
        for offset, (x, y, side) in enumerate(run):
            whole = round(side)
            x1, y1 = round(x - whole / 2), round(y - whole / 2)
            rects[index + offset] = [x1, y1, x1 + whole, y1 + whole]
        index = end
    return rects
