"""Reading audio from common files and writing MP4 (H.264 + AAC) with PyAV's bundled FFmpeg."""

import io
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from lipsync_protocol.framing import FPS

# The containers read (FFmpeg's demuxer names): audio files and the common video files. No
# playlist or concat demuxer, which would open other files or URLs named inside the file.
CONTAINERS = ("wav", "w64", "flac", "mp3", "ogg", "mov", "matroska", "aac", "aiff", "avi")
CONTAINER_NAMES = "WAV, FLAC, MP3, Ogg, MP4/M4A/MOV, WebM/MKV, AAC, AIFF or AVI"


class AudioTooLong(ValueError):
    pass


def read_audio(source: Path | bytes, max_seconds: float | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and their sample rate, from a file or its bytes in one of
    CONTAINERS (WAV, FLAC, MP3, the audio track of a video...). With `max_seconds`, decoding
    stops with AudioTooLong past that duration, and the samples are decoded into one array
    sized for it (untouched pages cost no memory): one copy of the audio, never two."""
    opened = io.BytesIO(source) if isinstance(source, bytes) else str(source)
    with av.open(opened, options={"format_whitelist": ",".join(CONTAINERS)}) as container:
        if not container.streams.audio:
            raise ValueError(f"{'the file' if isinstance(source, bytes) else source}: no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        samples = _Samples(None if max_seconds is None else int(max_seconds * rate), max_seconds)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        for frame in container.decode(stream):
            for mono in resampler.resample(frame):
                samples.add(mono.to_ndarray().reshape(-1))
        for mono in resampler.resample(None):
            samples.add(mono.to_ndarray().reshape(-1))
    return samples.array(), rate


class _Samples:
    """Decoded samples, gathered into one array when their number is bounded."""

    def __init__(self, limit: int | None, max_seconds: float | None):
        self.limit, self.max_seconds = limit, max_seconds
        self.size = 0
        self.parts: list[np.ndarray] = []
        self.buffer = None if limit is None else np.empty(limit, np.float32)

    def add(self, part: np.ndarray) -> None:
        end = self.size + len(part)
        if self.buffer is None:
            self.parts.append(part)
        elif end > len(self.buffer):
            raise AudioTooLong(f"the audio is longer than the limit of {self.max_seconds:g} s")
        else:
            self.buffer[self.size : end] = part
        self.size = end

    def array(self) -> np.ndarray:
        if self.buffer is not None:
            return self.buffer[: self.size]
        return np.concatenate(self.parts).astype(np.float32, copy=False) if self.parts else np.zeros(0, np.float32)


def write_mp4(
    path: Path,
    jpeg_frames: Iterable[bytes],
    audio: np.ndarray | Callable[[], np.ndarray],
    sample_rate: int,
    crf: int = 20,
) -> int:
    """Writes 25 fps H.264 video from JPEG frames with the audio as AAC; returns frames written.

    The sound track is written after the last frame; `audio` may be a function that returns it
    then (for a live stream, whose audio is complete only when its frames are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": str(crf), "preset": "veryfast"})
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=sample_rate)
        sound.layout = "mono"
        for jpeg in jpeg_frames:
            image = _decode_jpeg(jpeg)
            if count == 0:
                video.width, video.height = image.width, image.height
            frame = image.reformat(format="yuv420p")
            frame.pts = count
            frame.time_base = Fraction(1, FPS)
            container.mux(video.encode(frame))
            count += 1
        container.mux(video.encode(None))
        track = audio() if callable(audio) else audio
        samples = av.AudioFrame.from_ndarray(np.asarray(track, np.float32).reshape(1, -1), format="flt", layout="mono")
        samples.sample_rate = sample_rate
        samples.pts = 0
        for converted in av.AudioResampler(format="fltp", layout="mono", rate=sample_rate).resample(samples):
            container.mux(sound.encode(converted))
        container.mux(sound.encode(None))
    return count


def write_jpegs(folder: Path, jpeg_frames: Iterable[bytes]) -> int:
    """Writes the frames as they came from the server: 000000.jpg, 000001.jpg, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for count, jpeg in enumerate(jpeg_frames, start=1):
        (folder / f"{count - 1:06d}.jpg").write_bytes(jpeg)
    return count


def _decode_jpeg(jpeg: bytes) -> av.VideoFrame:
    return av.VideoFrame.from_image(Image.open(io.BytesIO(jpeg)).convert("RGB"))
