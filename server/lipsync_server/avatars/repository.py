"""Writes avatars into a model repository: media, configs, and numbered weight versions."""

import ctypes
import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from lipsync_protocol import avatar_names
from lipsync_server.crop import FEATHERED, PASTES

from . import compositing, media, quality_record

TEMPLATES = Path(__file__).parent / "avatar_model"
CREATION_PARAMETER = "creation"
CREATION_FIGURES = ("psnr_db", "sync_r", "real_sync_r", "failed")
ENV_REPOSITORY = "LIPSYNC_MODEL_REPOSITORY"
JPEG_QUALITY = 95
# renameat2(2): the two paths trade places in one step (Linux 3.15+; Python's os has no call for it).
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
# An avatar version's model.py in the CPU profile: a shared runner that checks the avatar's media
# and graph when it loads. (The encoder's versions copy its committed audio_encoder/1/model.py.)
AVATAR_MODEL_PY = (
    '"""CPU profile: this avatar version, checked, then run by ONNX Runtime."""\n'
    "from lipsync_server.backend.avatar_model import TritonPythonModel  # noqa: F401\n"
)


def default_repository() -> Path:
    """$LIPSYNC_MODEL_REPOSITORY, else model_repository/ in the working directory: the same
    for the server, `lipsync-server import` and `quantize`, wherever the package is installed."""
    return Path(os.environ.get(ENV_REPOSITORY) or "model_repository").absolute()


def write_media(
    repository: Path, name: str, frames: Iterable[np.ndarray | Path], rects, paste: str = FEATHERED
) -> Path:
    """Stores frames (RGB arrays, or JPEG files copied as they are), their crop squares and how
    faces are pasted into them (crop.PASTES) as the avatar's media, replacing old media only once
    the new media is complete, in one step."""
    if paste not in PASTES:
        raise ValueError(f"paste {paste[:16]!r} is not one of {', '.join(PASTES)}")
    target = media.media_dir(repository, name)
    staging = target.with_name(media.MEDIA + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "frames").mkdir(parents=True)
    rects = [[int(v) for v in rect] for rect in rects]
    faces = []
    for index, (frame, rect) in enumerate(zip(frames, rects, strict=True)):
        path = staging / "frames" / f"{index:06d}.jpg"
        if isinstance(frame, Path):
            shutil.copyfile(frame, path)
        else:
            Image.fromarray(frame).save(path, quality=JPEG_QUALITY)
        decoded = np.asarray(Image.open(path).convert("RGB"))  # what the compositor will see
        try:
            compositing.check_rect(rect, decoded.shape[1], decoded.shape[0])
        except ValueError as error:
            shutil.rmtree(staging)
            raise ValueError(f"frame {index}: {error}") from None
        faces.append(compositing.face_input(decoded[..., ::-1], rect))  # the network wants BGR
    np.save(staging / "faces.npy", np.stack(faces))
    (staging / media.PASTE_FILE).write_text(json.dumps({"paste": paste}))
    (staging / "rects.json").write_text(json.dumps(rects))
    _swap_in(staging, target)
    _write_configs(repository, name)
    return target


def _swap_in(staging: Path, target: Path) -> None:
    """Puts the folder `staging` at `target` with no moment where a crash leaves neither the old
    nor the new one there, then removes the old one (left at `staging` if that is interrupted,
    and removed by the next write)."""
    if not target.exists():
        staging.rename(target)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(_AT_FDCWD, os.fsencode(staging), _AT_FDCWD, os.fsencode(target), _RENAME_EXCHANGE):
        error = ctypes.get_errno()
        raise OSError(error, f"cannot swap {staging} in for {target}: {os.strerror(error)}")
    shutil.rmtree(staging)


def versions(repository: Path, name: str) -> list[int]:
    return _versions(Path(repository) / avatar_names.model_name(name))


def version_folder(repository: Path, name: str, version: int) -> Path:
    return Path(repository) / avatar_names.model_name(name) / str(int(version))


def add_version(repository: Path, name: str, write_onnx: Callable[[Path], None], version: int | None = None) -> int:
    """Adds the avatar's next (or the given, new) version, its model.onnx written by
    `write_onnx(path)` (the importer exports the network); returns the number."""
    folder = Path(repository) / avatar_names.model_name(name)
    if version and (folder / str(version)).exists():
        raise ValueError(
            f"avatar {name!r} already has a version {version}: choose another, or leave it out for the next"
        )
    version = version or max(_versions(folder), default=0) + 1
    write_onnx(folder / str(version) / "model.onnx")
    (folder / str(version) / "model.py").write_text(AVATAR_MODEL_PY)
    return version


def has_encoder(repository: Path) -> bool:
    return bool(_versions(Path(repository) / "audio_encoder"))


def latest_encoder(repository: Path) -> Path:
    """model.onnx of the shared audio encoder's latest version (the one the server serves)."""
    folder = Path(repository) / "audio_encoder"
    return folder / str(max(_versions(folder))) / "model.onnx"


def add_encoder_version(repository: Path, write_onnx: Callable[[Path], None]) -> int:
    """Adds audio_encoder's next version (served as the latest), its model.onnx written by
    `write_onnx(path)`; returns the number."""
    folder = Path(repository) / "audio_encoder"
    version = max(_versions(folder), default=0) + 1
    write_onnx(folder / str(version) / "model.onnx")
    shutil.copyfile(folder / "1" / "model.py", folder / str(version) / "model.py")  # the model's own runner
    return version


def _versions(model_folder: Path) -> list[int]:
    return sorted(int(p.name) for p in model_folder.glob("*") if p.is_dir() and p.name.isdigit())


def _write_configs(repository: Path, name: str) -> None:
    """The avatar model's configs from the templates, with the versions' creation reports as
    the parameter CREATION_PARAMETER (JSON: version -> figures), which clients read with the
    model's config (`lipsync avatars`)."""

    folder = Path(repository) / avatar_names.model_name(name)
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    reports = {
        str(v): {key: report[key] for key in CREATION_FIGURES}
        for v in _versions(folder)
        if (report := quality_record.read(folder / str(v)).get("creation"))
    }
    # JSON's quoting of an ASCII text (json.dumps escapes the rest) is protobuf text format's too.
    text = json.dumps(json.dumps(reports))
    parameter = f"parameters {{ key: {json.dumps(CREATION_PARAMETER)} value: {{ string_value: {text} }} }}\n"
    for config in ("config.pbtxt", "configs/cpu.pbtxt"):
        _replace_file((TEMPLATES / config).read_text() + (parameter if reports else ""), folder / config)


def record_creation(repository: Path, name: str, version: int, report: dict) -> None:
    """Keeps an avatar creation's quality report with the version it made, and in its configs."""

    folder = version_folder(repository, name, version)
    quality_record.write(folder, {**quality_record.read(folder), "creation": report})
    _write_configs(repository, name)


def _replace_file(text: str, target: Path) -> None:
    """Writes `text` to `target` by writing it beside it, then renaming it over."""
    staging = target.with_name(target.name + ".partial")
    staging.write_text(text)
    os.replace(staging, target)
