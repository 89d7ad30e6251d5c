"""Live streaming through the real server: frames of a clip streamed in chunks of any size are
bit-identical to rendering the clip at once, in order, with the avatar's loop continued."""

import itertools

import numpy as np
import pytest

from lipsync import streaming
from lipsync.client import LipsyncClient
from lipsync_protocol import framing

pytestmark = pytest.mark.integration


def chunks_of(audio: np.ndarray, sizes):
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(audio):
            return
        yield audio[position : position + size]
        position += size


@pytest.fixture(scope="module")
def client(grpc_url, parity_avatar):
    return LipsyncClient(grpc_url)


@pytest.mark.parametrize(
    "samples, sizes",
    [
        (24000, [framing.SAMPLES_PER_FRAME]),  # one frame of audio at a time
        (24000, [5 * framing.SAMPLES_PER_FRAME]),  # 200 ms chunks
        (76700, [1000, 37, 5000, 2222, 640, 9001]),  # irregular; 384 mel frames: a rounding exception
    ],
    ids=["1-frame", "5-frame", "irregular-exception-length"],
)
def test_streamed_raw_faces_equal_whole_clip_bit_for_bit(client, speech, samples, sizes):
    audio = np.resize(speech[0], samples)
    whole = client.render_faces(audio, 16000, "parity", version=1, start_frame=3)
    streamed = list(client.stream_faces(chunks_of(audio, sizes), 16000, "parity", version=1, start_frame=3))
    assert len(streamed) == len(whole) == framing.frame_count(samples)
    mismatched = [i for i, (a, b) in enumerate(zip(streamed, whole)) if not np.array_equal(a, b)]
    assert mismatched == []


def test_streamed_jpegs_equal_whole_clip(client, speech):
    audio = speech[0][:20000]
    whole = client.render(audio, 16000, "parity", version=1, start_frame=7)
    streamed = list(client.stream(chunks_of(audio, [3200]), 16000, "parity", version=1, start_frame=7, max_in_flight=3))
    assert streamed == whole


def test_frames_arrive_before_the_stream_ends(client, speech):
    audio = speech[0][:32000]
    arrived_with = []  # audio sent when each frame arrived

    def paced():
        for position in range(0, len(audio), 3200):
            arrived_with.append(position)
            yield audio[position : position + 3200]

    frames = client.stream_faces(paced(), 16000, "parity", version=1, max_in_flight=1)
    first = next(frames)
    sent = arrived_with[-1] + 3200
    assert first.shape == (3, 320, 320)
    assert sent < len(audio), "the first frame waited for the end of the stream"
    assert sent <= streaming.LOOKAHEAD_SECONDS * 16000 + 2 * 3200  # look-ahead plus chunk granularity
    assert 1 + sum(1 for _ in frames) == framing.frame_count(len(audio))
