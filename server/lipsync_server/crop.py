"""Crop geometry of the SyncTalk_2D "328" models, with no dependency so that any tool (the GPU
benchmark runs with PyTorch alone) takes it from here.

A crop square of the frame is resized to CROP x CROP; the network sees and regenerates its inner
FACE x FACE, BORDER pixels in from each side.

Pasting the generated face back either replaces the square ("hard", the reference's) or blends it
in ("feathered", the default): the generated face's weight rises from 0 at its edge to 1 over
FEATHER of the square's side, so that no edge shows where it meets the frame.
"""

CROP = 328
BORDER = 4
FACE = CROP - 2 * BORDER
FEATHERED, HARD = "feathered", "hard"
PASTES = (FEATHERED, HARD)
# The ramp: wide enough to hide a difference in shade, narrow enough to end before the lips (in
# SyncTalk_2D's square, whose top is the nose, the mouth starts about 11 % in from the top and
# the sides).
FEATHER = 0.06


def feather_weights(length: int) -> list[float]:
    """The generated face's weight at each of `length` pixels across the square (one axis):
    0 up to the face's edge, a smoothstep over FEATHER * length, 1 in the middle."""
    edge, ramp = BORDER * length / CROP, max(FEATHER * length, 1.0)
    weights = []
    for i in range(length):
        distance = min(i + 0.5, length - i - 0.5) - edge  # from the generated face's edge, inwards
        t = min(max(distance / ramp, 0.0), 1.0)
        weights.append(t * t * (3.0 - 2.0 * t))
    return weights
