"""Faces in video frames: how many there are (BlazeFace, every frame) and the 468 face mesh points
of the one being tracked, found in a square region around the face: from the detector on the
first frame, then from the previous frame's points (as MediaPipe's face mesh graph tracks).

The networks' pre- and post-processing (anchors, box decoding, the rotated region) is written
here because the library that has it cannot be installed beside the client (face_models.py).
"""

from dataclasses import dataclass

import cv2
import numpy as np
import openvino as ov

from . import face_models

DETECTOR_SIZE = 192
MESH_SIZE = 192
DETECTION_SCORE = 0.5  # a face counts from here (MediaPipe's default)
MESH_PRESENCE = 0.5  # the mesh network's own "a face is in the region" score
# The region the mesh looks at: the face's box grown by this much (MediaPipe's 1.5 from a
# detection, 1.5 from the previous points).
REGION_SCALE = 1.5
# Face mesh points: the eyes' outer corners set the face's roll.
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


@dataclass
class Detection:
    box: np.ndarray  # x1, y1, x2, y2 in pixels
    eyes: np.ndarray  # [2, 2]: the right eye (image left) and the left eye, pixels
    score: float


@dataclass
class Tracked:
    faces: list[Detection]  # every face the detector found in the frame
    points: np.ndarray | None  # [468, 3] in pixels (z in the x scale) of the tracked face, or None
    presence: float  # the mesh network's score for the tracked face (0 when none was looked for)


class FaceTracker:
    def __init__(self, threads: int = 1):
        detector, mesh = face_models.paths()
        core = ov.Core()
        config = {"INFERENCE_NUM_THREADS": threads}
        self.detector = core.compile_model(core.read_model(detector), "CPU", config)
        self.mesh = core.compile_model(core.read_model(mesh), "CPU", config)
        self.anchors = _anchors()
        self.previous: np.ndarray | None = None

    def track(self, rgb: np.ndarray, follow: bool = True) -> Tracked:
        """The faces in this RGB frame and the tracked face's points (None when there is none).
        `follow`: from the previous frame's face (a video); else from the detector alone."""
        faces = self.detect(rgb)
        region = None
        if not follow:
            self.previous = None
        if self.previous is not None:
            region = _region_from_points(self.previous)
        elif faces:
            best = max(faces, key=lambda face: face.score)
            region = _region_from_box(best.box, best.eyes)
        if region is None:
            return Tracked(faces, None, 0.0)
        points, presence = self._mesh(rgb, *region)
        if presence < MESH_PRESENCE and self.previous is not None and faces:
            # Lost the face it followed: start again from the detector.
            best = max(faces, key=lambda face: face.score)
            points, presence = self._mesh(rgb, *_region_from_box(best.box, best.eyes))
        self.previous = points if presence >= MESH_PRESENCE else None
        return Tracked(faces, self.previous, presence)

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces scoring DETECTION_SCORE or more, overlapping ones merged (non-maximum suppression)."""
        height, width = rgb.shape[:2]
        scale = DETECTOR_SIZE / max(height, width)
        resized = cv2.resize(rgb, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        square = np.zeros((DETECTOR_SIZE, DETECTOR_SIZE, 3), np.float32)
        top, left = (DETECTOR_SIZE - resized.shape[0]) // 2, (DETECTOR_SIZE - resized.shape[1]) // 2
        square[top : top + resized.shape[0], left : left + resized.shape[1]] = resized / 127.5 - 1.0
        outputs = self.detector(square[None])
        boxes, scores = outputs[0][0], outputs[1][0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(scores.astype(np.float64), -100, 100)))
        keep = np.flatnonzero(scores >= DETECTION_SCORE)
        if keep.size == 0:
            return []
        # Offsets in detector pixels from each anchor's centre; back to the frame's pixels.
        raw = boxes[keep]
        centre = raw[:, :2] / DETECTOR_SIZE + self.anchors[keep]
        size = raw[:, 2:4] / DETECTOR_SIZE
        eyes = raw[:, 4:8].reshape(-1, 2, 2) / DETECTOR_SIZE + self.anchors[keep][:, None]
        offset = np.array([left, top]) / DETECTOR_SIZE

        def to_frame(xy):
            return (xy - offset) * DETECTOR_SIZE / scale

        corners = np.concatenate([to_frame(centre - size / 2), to_frame(centre + size / 2)], axis=1)
        xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in corners]
        chosen = cv2.dnn.NMSBoxes(xywh, scores[keep].tolist(), DETECTION_SCORE, 0.3)
        return [Detection(corners[i], to_frame(eyes[i]), float(scores[keep][i])) for i in np.ravel(chosen)]

    def _mesh(self, rgb: np.ndarray, centre: np.ndarray, size: float, angle: float) -> tuple[np.ndarray, float]:
        """The mesh points of the square region (centre, side, roll in radians) and its presence score."""
        cos, sin = np.cos(angle), np.sin(angle)
        # Region corners (top-left, top-right, bottom-left) in the frame, rotated with the face.
        half = size / 2
        corners = np.array([[-half, -half], [half, -half], [-half, half]])
        rotation = np.array([[cos, -sin], [sin, cos]])
        source = (corners @ rotation.T + centre).astype(np.float32)
        target = np.array([[0, 0], [MESH_SIZE, 0], [0, MESH_SIZE]], np.float32)
        forward = cv2.getAffineTransform(source, target)
        crop = cv2.warpAffine(rgb, forward, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
        outputs = self.mesh((crop.astype(np.float32) / 255.0)[None])
        points = outputs[0].reshape(-1, 3).astype(np.float64)
        presence = float(1.0 / (1.0 + np.exp(-outputs[1].reshape(-1)[0])))
        back = cv2.invertAffineTransform(forward)
        xy = points[:, :2] @ back[:, :2].T + back[:, 2]
        z = points[:, 2:] * size / MESH_SIZE
        return np.concatenate([xy, z], axis=1), presence


def _anchors() -> np.ndarray:
    """BlazeFace full range's 2304 anchor centres (x, y) in [0, 1]: one a cell of a 48x48 grid."""
    grid = DETECTOR_SIZE // 4
    y, x = np.mgrid[0:grid, 0:grid]
    return (np.stack([x.ravel(), y.ravel()], axis=1) + 0.5) / grid


def _roll(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """The angle that turns the line from the image-left eye to the other one horizontal."""
    dx, dy = left_eye - right_eye
    return float(np.arctan2(dy, dx))


def _region_from_box(box: np.ndarray, eyes: np.ndarray) -> tuple[np.ndarray, float, float]:
    centre = (box[:2] + box[2:]) / 2
    size = float(max(box[2:] - box[:2])) * REGION_SCALE
    return centre, size, _roll(eyes[0], eyes[1])


def _region_from_points(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    angle = _roll(points[RIGHT_EYE_OUTER, :2], points[LEFT_EYE_OUTER, :2])
    # The points' box in the face's own upright frame, so that a rolled head keeps its size.
    cos, sin = np.cos(-angle), np.sin(-angle)
    upright = points[:, :2] @ np.array([[cos, -sin], [sin, cos]]).T
    low, high = upright.min(axis=0), upright.max(axis=0)
    centre_upright = (low + high) / 2
    centre = centre_upright @ np.array([[cos, sin], [-sin, cos]]).T
    return centre, float(max(high - low)) * REGION_SCALE, angle
