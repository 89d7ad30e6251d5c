"""An avatar's media on disk and in memory.

An avatar is a Triton model `avatar_<name>` whose numbered version folders hold the per-person
UNet weights; its media, shared by all versions, lives beside them:

    avatar_<name>/media/frames/000000.jpg ...  background frames (JPEG, any size)
                  media/rects.json            [[x1, y1, x2, y2], ...] crop square per frame
                  media/faces.npy             uint8 [N, 320, 320, 3] BGR: the network's face input
                  media/paste.json            {"paste": "feathered"} or "hard", the reference's
                                              (crop.py; absent: feathered)

faces.npy is the inner 320x320 of each crop resized to 328x328, precomputed so that serving
never decodes a frame to build the network's input.
"""

import functools
import itertools
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lipsync_protocol.avatar_names import model_name
from lipsync_server.crop import FEATHERED, PASTES

MEDIA = "media"
PASTE_FILE = "paste.json"


def media_dir(repository: Path, avatar: str) -> Path:
    return Path(repository) / model_name(avatar) / MEDIA


def read_paste(directory: Path) -> str:
    """How the avatar's generated faces are pasted (crop.PASTES): paste.json's, else feathered."""
    path = Path(directory) / PASTE_FILE
    if not path.is_file():
        return FEATHERED
    try:
        paste = json.loads(path.read_text())["paste"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f'{PASTE_FILE} must be {{"paste": one of {", ".join(PASTES)}}}: {error}') from None
    if paste not in PASTES:
        raise ValueError(f"{PASTE_FILE}: paste {str(paste)[:16]!r} is not one of {', '.join(PASTES)}")
    return paste


class FrameCache:
    """Decoded background frames of all avatars, least recently used out first: one bound for
    the whole server however many avatars it serves (a 1280x720 frame is 2.8 MB decoded)."""

    def __init__(self, max_frames: int):
        self.max_frames = max_frames
        self._frames: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, decode) -> np.ndarray:
        with self._lock:
            frame = self._frames.get(key)
            if frame is not None:
                self._frames.move_to_end(key)
                return frame
        frame = decode()  # outside the lock: decoding releases the GIL, threads decode in parallel
        with self._lock:
            self._frames[key] = frame
            while len(self._frames) > self.max_frames:
                self._frames.popitem(last=False)
        return frame


class AvatarMedia:
    """Read-only view of one avatar's media; frames are decoded on demand and cached."""

    _ids = itertools.count()

    def __init__(self, directory: Path, cache: FrameCache | None = None):
        self.directory = Path(directory)
        self.cache = cache or FrameCache(64)
        self._id = next(self._ids)  # the cache's key: a reloaded avatar's frames are new frames
        try:
            self.rects = np.asarray(json.loads((self.directory / "rects.json").read_text()), dtype=np.int64)
        except json.JSONDecodeError as error:
            raise ValueError(f"rects.json is not valid JSON: {error}") from None
        self.faces = np.load(self.directory / "faces.npy", mmap_mode="r")
        self.paste = read_paste(self.directory)
        self.frame_paths = sorted((self.directory / "frames").glob("*.jpg"))
        if not (len(self.rects) == len(self.faces) == len(self.frame_paths) > 0):
            raise ValueError(
                f"{self.directory}: {len(self.frame_paths)} frames, {len(self.rects)} rects and "
                f"{len(self.faces)} faces must be equal and non-zero"
            )

    def __len__(self) -> int:
        return len(self.rects)

    def verify(self) -> None:
        """Reads every frame's header and checks crops and rectangles against it; raises
        ValueError (or OSError) naming the first problem. Run when the avatar loads."""
        from PIL import Image

        from .compositing import check_rect

        if self.faces.dtype != np.uint8 or self.faces.shape[1:] != (320, 320, 3):
            raise ValueError(f"faces.npy holds {self.faces.dtype} {list(self.faces.shape)}, not uint8 [N, 320, 320, 3]")
        if self.rects.ndim != 2 or self.rects.shape[1] != 4:
            raise ValueError(f"rects.json must list [x1, y1, x2, y2] per frame, got shape {list(self.rects.shape)}")
        for index, path in enumerate(self.frame_paths):
            try:  # the header only: a load must not decode every frame (a long video has thousands)
                with Image.open(path) as image:
                    width, height = image.size
            except OSError as error:
                raise ValueError(f"frame {path.name} cannot be decoded: {error}") from None
            try:
                check_rect(self.rects[index], width, height)
            except ValueError as error:
                raise ValueError(f"frame {path.name}: {error}") from None

    @functools.cached_property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of its frames: the first one's header."""
        from PIL import Image

        with Image.open(self.frame_paths[0]) as image:
            return image.size

    def background(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Frame `index`, decoded to RGB (`size`: scaled to (width, height), area-averaged)."""
        full = self.cache.get((self._id, index), lambda: self._decode(index))
        if size is None or size == (full.shape[1], full.shape[0]):
            return full
        return self.cache.get((self._id, index, size), lambda: cv2.resize(full, size, interpolation=cv2.INTER_AREA))

    def _decode(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.frame_paths[index]) as image:
            return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class LoopRecord:
    """What checking a request needs of an avatar, without its faces or frames."""

    frames: int  # the loop's length
    frame_size: tuple[int, int]  # (width, height) of its frames


def read_loop_record(directory: Path) -> LoopRecord:
    """rects.json's length (one crop per frame) and the first frame's header."""
    from PIL import Image

    try:
        frames = len(json.loads((Path(directory) / "rects.json").read_text()))
    except json.JSONDecodeError as error:
        raise ValueError(f"rects.json is not valid JSON: {error}") from None
    first = min((Path(directory) / "frames").glob("*.jpg"), default=None)
    if not frames or first is None:
        raise ValueError(f"{directory}: an avatar needs frames and their crops")
    with Image.open(first) as image:
        return LoopRecord(frames, image.size)


class AvatarStore:
    """Avatars of one model repository, loaded lazily and reloaded when their media changes."""

    def __init__(self, repository: Path, frame_cache: int = 64):
        self.repository = Path(repository)
        self.frames = FrameCache(frame_cache)
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[float, AvatarMedia]] = {}
        self._records: dict[str, tuple[float, LoopRecord]] = {}

    def exists(self, avatar: str) -> bool:
        return (media_dir(self.repository, avatar) / "rects.json").is_file()

    def get(self, avatar: str) -> AvatarMedia:
        directory = media_dir(self.repository, avatar)
        stamp = (directory / "rects.json").stat().st_mtime
        with self._lock:
            cached = self._loaded.get(avatar)
            if cached is None or cached[0] != stamp:
                cached = (stamp, AvatarMedia(directory, self.frames))
                self._loaded[avatar] = cached
            return cached[1]

    def loop_record(self, avatar: str) -> LoopRecord:
        """The avatar's LoopRecord, read again when its media changes: what request_validator
        holds of an avatar, where face_generator and the compositor hold its media."""
        directory = media_dir(self.repository, avatar)
        stamp = (directory / "rects.json").stat().st_mtime
        with self._lock:
            cached = self._records.get(avatar)
        if cached is None or cached[0] != stamp:
            cached = (stamp, read_loop_record(directory))
            with self._lock:
                self._records[avatar] = cached
        return cached[1]
