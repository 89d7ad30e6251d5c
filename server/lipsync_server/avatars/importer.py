"""Imports SyncTalk_2D material into a model repository: avatars (from a dataset folder or a
video with crop rectangles) and checkpoints (as a new avatar's weights or its next version).

Offline: it writes files; `lipsync load NAME` (or a server restart) makes the server serve them.
"""

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import numpy as np

from lipsync_protocol import avatar_names
from lipsync_server import runtimes
from lipsync_server.crop import FEATHERED
from lipsync_server.networks import checkpoints

from . import media, quality, repository

# Landmark indices of SyncTalk_2D's 110-point .lms files that define the crop square.
JAW_LEFT, JAW_RIGHT, CROP_TOP = 1, 31, 52


class AvatarImportError(ValueError):
    """Input material that cannot become an avatar; the message says which file and why."""


def crop_from_landmarks(path: Path) -> list[int]:
    """[x1, y1, x2, y2]: jaw-to-jaw width, from landmark 52 down, square (int32-truncated)."""
    try:
        points = np.array([line.split() for line in path.read_text().splitlines() if line.strip()], dtype=np.float32)
    except ValueError as error:
        raise AvatarImportError(f"{path}: not 'x y' pairs per line ({error})") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) <= CROP_TOP:
        raise AvatarImportError(f"{path}: expected 110 'x y' landmark lines, found {len(points)}")
    points = points.astype(np.int32)
    x1, x2, y1 = int(points[JAW_LEFT][0]), int(points[JAW_RIGHT][0]), int(points[CROP_TOP][1])
    return [x1, y1, x2, y1 + (x2 - x1)]


def read_dataset(folder: Path) -> tuple[list[Path], list[list[int]]]:
    """Frames and crops of a SyncTalk_2D dataset folder: full_body_img/<n>.jpg, landmarks/<n>.lms."""
    images = {int(p.stem): p for p in (folder / "full_body_img").glob("*.jpg") if p.stem.isdigit()}
    if not images:
        raise AvatarImportError(f"{folder}: no full_body_img/<n>.jpg frames")
    order = sorted(images)
    if order != list(range(len(order))):
        raise AvatarImportError(f"{folder}: frames must be numbered 0..{len(order) - 1} without gaps")
    rects = []
    for n in order:
        lms = folder / "landmarks" / f"{n}.lms"
        if not lms.is_file():
            raise AvatarImportError(f"{folder}: landmarks/{n}.lms is missing for full_body_img/{n}.jpg")
        rects.append(crop_from_landmarks(lms))
    return [images[n] for n in order], rects


def read_video(video: Path, rects_json: Path) -> tuple[Iterator[np.ndarray], list[list[int]]]:
    """RGB frames of a video and their rectangles from crop_rects.json ([[x1, y1, x2, y2], ...])."""
    try:
        rects = json.loads(rects_json.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise AvatarImportError(f"{rects_json}: {error}") from None
    if not (isinstance(rects, list) and all(isinstance(r, list) and len(r) == 4 for r in rects)):
        raise AvatarImportError(f"{rects_json}: expected [[x1, y1, x2, y2], ...]")
    with av.open(str(video)) as container:
        count = sum(1 for _ in container.decode(video=0))
    if count != len(rects):
        raise AvatarImportError(f"{video} has {count} frames but {rects_json} has {len(rects)} rectangles")

    def frames():
        with av.open(str(video)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")

    return frames(), rects


def import_avatar(
    repo: Path,
    name: str,
    dataset: Path | None = None,
    video: Path | None = None,
    rects: Path | None = None,
    paste: str = FEATHERED,
) -> Path:
    avatar_names.check_name(name)
    frames: Iterable[np.ndarray | Path]
    if dataset is not None:
        frames, crops = read_dataset(dataset)
    elif video is not None and rects is not None:
        frames, crops = read_video(video, rects)
    else:
        raise AvatarImportError("give a SyncTalk_2D dataset folder, or a video and its crop_rects.json")
    try:
        return repository.write_media(repo, name, frames, crops, paste)
    except ValueError as error:
        raise AvatarImportError(f"avatar {name!r}: {error}") from None


def import_unet(repo: Path, name: str, checkpoint: Path, version: int | None = None) -> int:
    """The checkpoint as the avatar's given or next version; the avatar's media must exist.
    On a CPU with native bf16, and with an audio encoder in the repository to make its input,
    the version's bf16 quality is measured and recorded too, so that a CPU server may run it in
    bf16 (quality.py)."""
    from lipsync_server.networks import export  # onnx and torch.onnx: loaded where a version is exported

    avatar_names.check_name(name)
    if not (media.media_dir(repo, name) / "rects.json").is_file():
        raise AvatarImportError(f"avatar {name!r} has no media in {repo}: import its frames first")
    unet = checkpoints.load_unet(checkpoint)
    added = repository.add_version(repo, name, lambda path: export.export_unet(unet, path), version)
    if runtimes.has_native_bf16() and repository.has_encoder(repo):
        quality.measure_version_bf16(repo, name, added)
    return added


def import_audio_encoder(repo: Path, checkpoint: Path) -> int:
    """The shared encoder checkpoint as audio_encoder's next version (served as the latest)."""
    from lipsync_server.networks import export  # onnx and torch.onnx: loaded where a version is exported

    encoder = checkpoints.load_audio_encoder(checkpoint)
    return repository.add_encoder_version(repo, lambda path: export.export_audio_encoder(encoder, path))
