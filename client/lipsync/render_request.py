"""What one render asks of the server, as one object: the speech, the avatar and where in its
loop, the part of a stream (a segment), how long its frames may take and their size."""

from dataclasses import dataclass, replace

import numpy as np

from lipsync_protocol import framing

from .streaming import Segment


@dataclass(frozen=True)
class RenderRequest:
    audio: np.ndarray  # mono float32 in [-1, 1]
    sample_rate: int
    avatar: str
    version: int | None = None  # None: the newest
    start_frame: int = 0  # the loop position of its first frame (START_FRAME)
    segment: Segment | None = None  # part of a stream (streaming.segment): audio from its begin
    max_wait_s: float | None = None  # from arrival to its frames done; None: the server's bound
    frame_size: tuple[int, int] | None = None  # (width, height); None: the avatar's own

    def part(self, audio: np.ndarray, segment: Segment) -> "RenderRequest":
        """The request for one segment of this stream or clip, which starts at start_frame
        (16 kHz `audio` from the segment's begin)."""
        start = self.start_frame + segment.stream_frame
        return replace(self, audio=audio, sample_rate=framing.SAMPLE_RATE, segment=segment, start_frame=start)

    def tensors(self) -> list[tuple[str, np.ndarray, str]]:
        """The ensemble's inputs: (name, array, Triton type)."""
        audio = np.ascontiguousarray(self.audio, dtype=np.float32).reshape(1, -1)
        tensors = [
            ("AUDIO", audio, "FP32"),
            ("SAMPLE_RATE", np.array([[self.sample_rate]], np.int32), "INT32"),
            ("AVATAR", np.array([[self.avatar.encode()]], np.object_), "BYTES"),
            ("START_FRAME", np.array([[self.start_frame]], np.int64), "INT64"),
        ]
        if self.version is not None:
            tensors.append(("AVATAR_VERSION", np.array([[self.version]], np.int64), "INT64"))
        if self.segment is not None:
            for name, number in (
                ("AUDIO_OFFSET", self.segment.begin),
                ("FIRST_FRAME", self.segment.first),
                ("FRAME_COUNT", self.segment.count),
            ):
                tensors.append((name, np.array([[number]], np.int64), "INT64"))
        if self.max_wait_s is not None:
            tensors.append(("MAX_WAIT_MS", np.array([[max(1, round(self.max_wait_s * 1000))]], np.int64), "INT64"))
        if self.frame_size is not None:
            tensors.append(("FRAME_SIZE", np.array([self.frame_size], np.int64), "INT64"))
        return tensors
