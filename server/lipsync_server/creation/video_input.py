"""A person's video as avatar material: its sound track as 16 kHz mono, and its pictures at 25
frames/s on the sound's clock, whatever the container, codec, resolution and frame rate
(variable rates from phones included): frame k is the picture on screen at k / 25 s of the
sound. Pictures are decoded one at a time (memory stays bounded whatever the length).

A video whose pictures cannot teach a mouth is refused here, in one pass over the file and
before any tracking or training, with the figure that shows it: a video track far longer or
shorter than the sound (broken timestamps), too few distinct pictures a second of sound (a
still, a slideshow, timestamps that stretch two pictures over a minute), or the picture standing
still over seconds of speech. Pictures are told apart on small grey thumbnails.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from lipsync_protocol import framing

MIN_SECONDS = 30.0  # of sound with a usable face: less is too little for the network to learn
EPSILON_S = 1e-3  # a picture stamped this close after an instant is already on screen at it
# The video track may end this far from the sound's end (at least 2 s): a phone's tracks differ
# by a frame or two; broken timestamps by minutes or hours.
TRACK_MISMATCH = 0.05
MIN_DISTINCT_PER_S = 5.0  # distinct pictures a second of sound: a talking head at 25 frames/s has ~25
MAX_STILL_S = 2.0  # the longest the picture may stand still over speech
VOICED_SHARE = 0.1  # speech: at least this share of the clip's loud level (its 95th percentile)
THUMBNAIL = (64, 36)  # grey, what tells pictures apart: compression noise averages out
CHANGE_LEVELS = 6  # a thumbnail pixel that moves this much (of 255) makes a distinct picture


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
        origin = _origin(container)
        audio, changes = _scan(container)
        if not changes:
            raise VideoInputError(f"{path}: the video stream has no pictures")
        rate = float(stream.average_rate or 0)
        width, height = stream.codec_context.width, stream.codec_context.height
    seconds = len(audio) / framing.SAMPLE_RATE
    if seconds < min_seconds:
        raise VideoInputError(f"{path}: {seconds:.1f} s of sound; an avatar needs at least {min_seconds:g} s")
    # The pictures last until the last one's time plus one of its frames; the sound is cut to
    # whole frames of them, and the frames are those the reference makes of that sound.
    picture_seconds = changes.last - origin + 1.0 / (rate or framing.FPS)
    _check_pictures(path, changes, audio, origin, seconds, picture_seconds)
    audio = audio[: int(min(seconds, picture_seconds) * framing.FPS) * framing.SAMPLES_PER_FRAME]
    return VideoInput(path, audio, framing.frame_count(len(audio)), width, height, rate)


@dataclass
class _Changes:
    """When the picture changed: the times of the distinct pictures, and the last picture's."""

    times: list[float]
    last: float

    def __bool__(self) -> bool:
        return bool(self.times)


def _scan(container) -> tuple[np.ndarray, _Changes]:
    """The sound as 16 kHz mono, and when the picture changed (one pass over the file)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=framing.SAMPLE_RATE)
    chunks, changes, shown = [], _Changes([], float("-inf")), None
    for packet in container.demux(container.streams.video[0], container.streams.audio[0]):
        for frame in packet.decode():
            if isinstance(frame, av.AudioFrame):
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            elif frame.time is not None:
                changes.last = max(changes.last, frame.time)
                thumbnail = frame.reformat(*THUMBNAIL, format="gray").to_ndarray().astype(np.int16)
                if shown is None or np.abs(thumbnail - shown).max() >= CHANGE_LEVELS:
                    changes.times.append(frame.time)
                    shown = thumbnail
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return (np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)), changes


def _check_pictures(
    path: Path, changes: _Changes, audio: np.ndarray, origin: float, seconds: float, picture_seconds: float
) -> None:
    """VideoInputError naming the figure, for pictures that cannot teach a mouth this sound."""
    last = changes.last - origin
    if abs(last - seconds) > max(2.0, TRACK_MISMATCH * seconds):
        raise VideoInputError(
            f"{path}: the video's last picture is at {last:.1f} s against {seconds:.1f} s of sound "
            "(broken timestamps, or a track cut short): re-encode or trim the video"
        )
    times = sorted(t - origin for t in changes.times if t - origin < seconds)
    if len(times) < MIN_DISTINCT_PER_S * seconds:
        raise VideoInputError(
            f"{path}: the video has {len(times)} distinct pictures in {seconds:.1f} s of sound "
            f"(an avatar needs at least {MIN_DISTINCT_PER_S:g} a second)"
        )
    ends = [*times[1:], min(seconds, picture_seconds)]
    voiced = _voiced(audio)
    spoken = []  # (seconds of speech the picture stood still over, from when)
    for start, end in zip(times, ends):
        spoken.append((voiced[round(start * framing.FPS) : round(end * framing.FPS)].sum() / framing.FPS, start))
    still, since = max(spoken)
    if still > MAX_STILL_S:
        raise VideoInputError(
            f"{path}: the picture stands still over {still:.1f} s of speech from {since:.1f} s "
            f"(at most {MAX_STILL_S:g} s: a person who talks moves)"
        )


def _voiced(audio: np.ndarray) -> np.ndarray:
    """Per 1/25 s of the sound: whether it is speech, loud against the clip's loud parts (a
    person may sit still in a pause, not while talking)."""
    frames = len(audio) // framing.SAMPLES_PER_FRAME
    rms = np.sqrt(np.mean(audio[: frames * framing.SAMPLES_PER_FRAME].reshape(frames, -1) ** 2, axis=1))
    return rms >= VOICED_SHARE * np.percentile(rms, 95) if frames else np.zeros(0, bool)


def _origin(container) -> float:
    """The sound's start time: time 0 of the 25 frames/s pictures."""
    stream = container.streams.audio[0]
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _open(path: Path):
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise VideoInputError(f"{path}: not a video FFmpeg can read ({str(error)[:120]})") from None
