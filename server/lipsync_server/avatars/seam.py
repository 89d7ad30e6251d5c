"""How much the pasted face's edge shows in a composed frame.

Along each side of the generated face's region (the crop square's inner 320/328), the change in
the frame across the edge is set against the change over the same distance just inside and just
outside it. About 1: the edge cannot be told from the picture around it; a hard paste of a face
whose shade is off by a few levels gives several times that.
"""

import numpy as np

from lipsync_server.crop import BORDER, CROP

SPAN = 3  # pixels each difference spans: the bicubic resize spreads a step over about two
GAP = 3  # how far the inside and outside differences start from the edge


def seam_ratio(frame: np.ndarray, rect) -> float:
    """Mean change across the four edges over the mean change beside them (frame: H x W x C)."""
    x1, y1, x2, y2 = (int(v) for v in rect)
    image = frame.astype(np.float32)
    inset_x = round(BORDER * (x2 - x1) / CROP)
    inset_y = round(BORDER * (y2 - y1) / CROP)
    top, bottom = y1 + inset_y, y2 - inset_y
    left, right = x1 + inset_x, x2 - inset_x
    # [position across the edge, position along it, channel], away from the corners.
    columns = image[top + SPAN + GAP : bottom - SPAN - GAP, :].transpose(1, 0, 2)
    rows = image[:, left + SPAN + GAP : right - SPAN - GAP]
    sides = [(columns, left, 1), (columns, right, -1), (rows, top, 1), (rows, bottom, -1)]
    changes = [_changes(profile, edge, inwards) for profile, edge, inwards in sides]
    across = np.mean([a for a, _ in changes])
    beside = np.mean([b for _, b in changes])
    return float(across / max(float(beside), 1e-6))


def _changes(profile: np.ndarray, edge: int, inwards: int) -> tuple[float, float]:
    """profile: [position across the edge, position along it, channel]."""

    def change(start: int) -> float:
        return float(np.abs(profile[start + inwards * SPAN] - profile[start]).mean())

    across = change(edge - inwards * (SPAN // 2 + 1))
    inside = change(edge + inwards * GAP)
    outside = change(edge - inwards * (GAP + SPAN))
    return across, (inside + outside) / 2
