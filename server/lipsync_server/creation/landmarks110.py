"""SyncTalk_2D's 110-point `.lms` layout from the face mesh's 468 points, for its own scripts.

Its training reads three points: 1 and 31 (the crop's sides) and 52 (the crop's top); those
come from the smoothed crop itself, so that its crop is this project's. The others follow its
layout's groups (0-32 contour with the chin at 16, 33-50 brows, 51-54 nose bridge from the tip
up, 55-65 nose, 66-89 eyes, 90-101 outer lips, 102-109 inner lips) with the face mesh's points
of the same places, in order along each feature: close to, not the same as, its own detector's.
"""

import numpy as np

from lipsync_server.avatars.importer import CROP_TOP, JAW_LEFT, JAW_RIGHT

# The mesh's jaw line from the face's image-left side, round the chin (152), to the other side.
JAW = [234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454]
ABOVE_JAW = (127, 356)  # contour points 0 and 32: just above the sides
BROWS = [70, 63, 105, 66, 107, 55, 65, 52, 53, 336, 296, 334, 293, 300, 285, 295, 282, 283]
NOSE_BRIDGE = [4, 5, 195, 6]
NOSE = [64, 98, 97, 2, 326, 327, 294, 1, 19, 94, 168]
EYES = [33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153]
EYES += [263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380]
OUTER_LIPS = [61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91]
INNER_LIPS = [78, 81, 13, 311, 308, 402, 14, 178]


def from_mesh(points: np.ndarray, rect: list[int]) -> np.ndarray:
    """[110, 2] in pixels: the layout's points for these mesh points and this crop rectangle."""
    contour = np.concatenate([points[[ABOVE_JAW[0]]], _along(points[JAW], 31), points[[ABOVE_JAW[1]]]])
    rest = points[BROWS + NOSE_BRIDGE + NOSE + EYES + OUTER_LIPS + INNER_LIPS]
    out = np.concatenate([contour, rest]).astype(np.float64)
    x1, y1, x2, _ = rect
    out[JAW_LEFT] = (x1, points[JAW[0], 1])
    out[JAW_RIGHT] = (x2, points[JAW[-1], 1])
    out[CROP_TOP] = ((x1 + x2) / 2, y1)
    return out


def _along(line: np.ndarray, count: int) -> np.ndarray:
    """`count` points evenly spaced along the polyline (by length), its ends included."""
    steps = np.linalg.norm(np.diff(line, axis=0), axis=1)
    at = np.concatenate([[0.0], np.cumsum(steps)])
    wanted = np.linspace(0.0, at[-1], count)
    return np.stack([np.interp(wanted, at, line[:, axis]) for axis in range(2)], axis=1)
