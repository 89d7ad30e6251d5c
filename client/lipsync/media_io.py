"""Reading audio from common files and writing MP4 (H.264 + AAC) with PyAV's bundled FFmpeg."""

import io
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from .framing import FPS


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and their sample rate, from any format FFmpeg reads
    (WAV, FLAC, MP3, the audio track of a video...)."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = []
        for frame in container.decode(stream):
            for mono in resampler.resample(frame):
                chunks.append(mono.to_ndarray().reshape(-1))
        for mono in resampler.resample(None):
            chunks.append(mono.to_ndarray().reshape(-1))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio.astype(np.float32, copy=False), rate


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
