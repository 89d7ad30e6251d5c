"""Which frames of a live stream can be rendered exactly, and the request that renders them.

A frame needs audio after it: its 16 encoder vectors reach 7 windows ahead, a window spans 16
mel frames, and a mel frame's STFT spans 400 samples either side. With the first `received`
samples of a stream (16 kHz), frames 0 .. ready_frames(received) - 1 come out exactly as they
would from the whole clip; the rest wait for more audio or for the end of the stream. That
look-ahead is about 0.46 s after a frame's start (LOOKAHEAD_SECONDS).

Each request sends a segment that starts on a 5-frame block boundary (where windows realign)
with at least 10 frames of context before the first frame it asks for, so that nothing the
frame depends on is cut by the segment's edge.
"""

from dataclasses import dataclass

from lipsync_protocol import framing

CONTEXT_FRAMES = 10  # the 9 encoder windows before a frame, plus one whose mel needs earlier audio
FILTER_MARGIN = 64  # samples past an STFT window that the 16 kHz resampling filter may read
BLOCK_FRAMES = framing.BLOCK_SAMPLES // framing.SAMPLES_PER_FRAME  # 5


@dataclass(frozen=True)
class Segment:
    begin: int  # first sample sent (a multiple of BLOCK_SAMPLES): the request's AUDIO_OFFSET
    end: int  # one past the last sample sent
    first: int  # FIRST_FRAME: frames of the segment to skip (context only)
    count: int  # FRAME_COUNT
    stream_frame: int  # the stream's index of the first frame returned


def ready_frames(received: int) -> int:
    """Frames that do not depend on audio after the first `received` samples."""
    last_mel = (received - framing.N_FFT // 2 - FILTER_MARGIN) // framing.HOP
    if last_mel < framing.WINDOW - 1:
        return 0
    # Last window w whose mel frames int(3.2 w) .. int(3.2 w) + 15 are all available.
    last_window = (framing.FPS * (last_mel - framing.WINDOW + 2) - 1) // framing.MEL_PER_SECOND
    return max(0, last_window - (framing.CONTEXT - 2))  # frame i reaches window i + 6


def segment(emitted: int, upto: int, received: int) -> Segment:
    """The request for frames emitted .. upto - 1, given `received` samples of the stream."""
    blocks = max(0, (emitted - CONTEXT_FRAMES) // BLOCK_FRAMES)
    skip = blocks * BLOCK_FRAMES
    return Segment(blocks * framing.BLOCK_SAMPLES, received, emitted - skip, upto - emitted, emitted)


def samples_needed(frames: int) -> int:
    """The fewest samples of a stream after which its first `frames` frames are exact."""
    low, high = 0, frames * framing.SAMPLES_PER_FRAME + framing.SAMPLE_RATE
    while low < high:  # ready_frames never decreases as audio arrives
        middle = (low + high) // 2
        low, high = (middle + 1, high) if ready_frames(middle) < frames else (low, middle)
    return low


def clip_segments(samples: int, chunk_frames: int) -> list[Segment]:
    """The requests that render a whole clip of `samples` (16 kHz) `chunk_frames` frames at a
    time, each with only the audio its frames depend on: together, the frames of one request."""
    total = framing.frame_count(samples)
    parts = []
    for first in range(0, total, chunk_frames):
        upto = min(first + chunk_frames, total)
        parts.append(segment(first, upto, samples if upto == total else min(samples, samples_needed(upto))))
    return parts


# Audio a stream must have received past a frame's start before that frame can be rendered.
LOOKAHEAD_SECONDS = samples_needed(1) / framing.SAMPLE_RATE  # 0.491
