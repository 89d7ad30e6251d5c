"""Crop geometry of the SyncTalk_2D "328" models, with no dependency so that any tool (the GPU
benchmark runs with PyTorch alone) takes it from here.

A crop square of the frame is resized to CROP x CROP; the network sees and regenerates its inner
FACE x FACE, BORDER pixels in from each side.
"""

CROP = 328
BORDER = 4
FACE = CROP - 2 * BORDER
