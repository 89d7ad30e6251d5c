"""The streaming plan: which frames are ready, and which audio a segment request needs."""

from lipsync import streaming
from lipsync_protocol import framing


def test_ready_frames_grow_with_audio_and_never_pass_the_clip():
    previous = 0
    for received in range(0, 200_000, 97):
        ready = streaming.ready_frames(received)
        assert previous <= ready < max(1, framing.frame_count(received) if received >= framing.MIN_SAMPLES else 1)
        previous = ready


def test_lookahead_is_about_half_a_second():
    assert 0.45 < streaming.LOOKAHEAD_SECONDS < 0.55


def test_segments_start_on_blocks_with_ten_frames_of_context():
    for emitted in range(0, 300):
        part = streaming.segment(emitted, emitted + 5, 500_000)
        assert part.begin % framing.BLOCK_SAMPLES == 0
        assert part.stream_frame == emitted and part.count == 5
        assert part.first == emitted if part.begin == 0 else part.first >= streaming.CONTEXT_FRAMES
        assert part.first < streaming.CONTEXT_FRAMES + streaming.BLOCK_FRAMES  # no more context than needed


def test_clip_segments_cover_every_frame_once_with_the_audio_they_depend_on():
    for samples in (3000, 16_000, 64_321, 208_000, 960_000):
        total = framing.frame_count(samples)
        parts = streaming.clip_segments(samples, chunk_frames=25)
        assert [p.stream_frame for p in parts] == list(range(0, total, 25))
        assert sum(p.count for p in parts) == total and parts[-1].end == samples
        for part in parts:
            last = part.stream_frame + part.count
            assert part.end == samples or streaming.ready_frames(part.end) >= last > streaming.ready_frames(
                part.end - 1
            )
            # The server's count for the segment (framing.frame_count with its offset) reaches its last frame.
            assert framing.frame_count(part.end - part.begin, part.begin // framing.HOP) >= part.first + part.count
