"""A person's video as avatar material: its sound track as 16 kHz mono, and its pictures at 25
frames/s on the sound's clock, whatever the container, codec, resolution and frame rate
(variable rates from phones included): frame k is the picture on screen at k / 25 s of the
sound. Pictures are decoded one at a time (memory stays bounded whatever the length).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lipsync_protocol import framing

MIN_SECONDS = 30.0  # of sound with a usable face: less is too little for the network to learn
EPSILON_S = 1e-3  # a picture stamped this close after an instant is already on screen at it


class VideoInputError(ValueError):
    """A video that cannot become an avatar; the message says why."""


@dataclass
class VideoInput:
    path: Path
    audio: np.ndarray  # float32 mono at 16 kHz
    frame_count: int  # pictures at 25 frames/s over the sound's length (and the pictures')
    width: int
    height: int
    source_fps: float  # the video's average rate, for the report

    def frames(self) -> Iterator[np.ndarray]:
        """The frame_count RGB pictures at 25 frames/s, in order: each the picture on screen at
        its instant (the first picture stands in before it is shown)."""
        with _open(self.path) as container:
            origin = _origin(container)
            shown: np.ndarray | None = None
            emitted = 0
            for picture in container.decode(container.streams.video[0]):
                if emitted == self.frame_count:
                    return
                if picture.time is None:
                    continue
                image = picture.to_ndarray(format="rgb24")
                # Every instant before this picture shows the picture before it.
                while emitted < self.frame_count and emitted / framing.FPS < picture.time - origin - EPSILON_S:
                    yield image if shown is None else shown
                    emitted += 1
                shown = image
            while shown is not None and emitted < self.frame_count:
                yield shown
                emitted += 1


def read(path: Path, min_seconds: float = MIN_SECONDS) -> VideoInput:
    """The video's sound and picture facts; VideoInputError for what cannot be used."""
    if not path.is_file():
        raise VideoInputError(f"{path}: no such file")
    with _open(path) as container:
        if not container.streams.video:
            raise VideoInputError(f"{path}: no video stream")
        if not container.streams.audio:
            raise VideoInputError(f"{path}: no sound track (the avatar learns its mouth from the person's speech)")
        stream = container.streams.video[0]
        audio, last = _audio_and_last_picture(container)
        origin = _origin(container)
        if last is None:
            raise VideoInputError(f"{path}: the video stream has no pictures")
        rate = float(stream.average_rate or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
    seconds = len(audio) / framing.SAMPLE_RATE
    if seconds < min_seconds:
        raise VideoInputError(f"{path}: {seconds:.1f} s of sound; an avatar needs at least {min_seconds:g} s")
    # The pictures last until the last one's time plus one of its frames; the sound is cut to
    # whole frames of them, and the frames are those the reference makes of that sound.
    picture_seconds = last - origin + 1.0 / (rate or framing.FPS)
    audio = audio[: int(min(seconds, picture_seconds) * framing.FPS) * framing.SAMPLES_PER_FRAME]
    return VideoInput(path, audio, framing.frame_count(len(audio)), width, height, rate)


def _audio_and_last_picture(container) -> tuple[np.ndarray, float | None]:
    """The sound as 16 kHz mono, and the last picture's time (one pass over the file)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=framing.SAMPLE_RATE)
    chunks, last = [], None
    for packet in container.demux(container.streams.video[0], container.streams.audio[0]):
        for frame in packet.decode():
            if isinstance(frame, av.AudioFrame):
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            elif frame.time is not None:
                last = frame.time if last is None else max(last, frame.time)
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return (np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)), last


def _origin(container) -> float:
    """The sound's start time: time 0 of the 25 frames/s pictures."""
    stream = container.streams.audio[0]
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _open(path: Path):
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise VideoInputError(f"{path}: not a video FFmpeg can read ({str(error)[:120]})") from None
