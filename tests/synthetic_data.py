"""Small SyncTalk_2D-format inputs made by the tests: dataset folders and videos with rects."""

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def frames(count: int, width: int = 320, height: int = 240, seed: int = 0):
    """BGR frames with smooth texture and a moving square crop: (frame, [x1, y1, x2, y2])."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 6)
    for i in range(count):
        frame = np.roll(base, i * 2, axis=1)
        cv2.circle(frame, (width // 2 + i, height // 2), 50, (90, 130, 200), -1)
        x1, y1 = width // 2 - 60 + i, height // 2 - 40
        yield frame, [x1, y1, x1 + 120, y1 + 120]


def write_dataset(folder: Path, count: int = 8, seed: int = 0) -> list[list[int]]:
    """full_body_img/<n>.jpg and landmarks/<n>.lms (110 points; 1, 31 and 52 set the crop)."""
    (folder / "full_body_img").mkdir(parents=True)
    (folder / "landmarks").mkdir()
    rng = np.random.default_rng(seed)
    rects = []
    for n, (frame, (x1, y1, x2, _)) in enumerate(frames(count, seed=seed)):
        cv2.imwrite(str(folder / "full_body_img" / f"{n}.jpg"), frame)
        points = rng.uniform(0, 200, (110, 2))
        points[1, 0], points[31, 0], points[52, 1] = x1 + 0.7, x2 + 0.2, y1 + 0.9  # truncated on read
        (folder / "landmarks" / f"{n}.lms").write_text("\n".join(f"{x:.3f} {y:.3f}" for x, y in points))
        rects.append([x1, y1, x2, y1 + (x2 - x1)])
    return rects


def write_video(folder: Path, count: int = 8, seed: int = 1) -> tuple[Path, Path, list[list[int]]]:
    """person.mp4 and crop_rects.json."""
    folder.mkdir(parents=True, exist_ok=True)
    video, rects_path, rects = folder / "person.mp4", folder / "crop_rects.json", []
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i, (frame, rect) in enumerate(frames(count, seed=seed)):
            picture = av.VideoFrame.from_ndarray(frame[..., ::-1].copy(), format="rgb24").reformat(format="yuv420p")
            picture.pts, picture.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(picture))
            rects.append(rect)
        container.mux(stream.encode(None))
    rects_path.write_text(json.dumps(rects))
    return video, rects_path, rects


def calibrated(model, *inputs, seed: int = 0):
    """The model with BatchNorm statistics taken from random inputs in realistic ranges
    ((shape, low, high) each), so that its output depends on its input as a trained network's
    does (default statistics make it nearly constant)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(*(low + (high - low) * torch.rand(shape, generator=generator) for shape, low, high in inputs))
    return model.eval()
