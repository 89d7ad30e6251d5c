"""The streaming plan: which frames are ready, and which audio a segment request needs."""
from lipsync import framing, streaming


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
