"""Request validation rules (run by the request_validator model)."""

import numpy as np
import pytest

from lipsync_server.backend.request_rules import (
    InvalidInput,
    check_audio,
    check_avatar,
    check_sample_rate,
    check_start_frame,
)


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (np.zeros(0, np.float32), 16000, "AUDIO: is empty"),
        (np.zeros(1, np.float32), 16000, "AUDIO: 1 samples at 16000 Hz is too short"),
        (np.array([0.0, np.nan] * 2000, np.float32), 16000, "AUDIO: contains NaN"),
        (np.array([np.inf] * 4000, np.float32), 16000, "AUDIO: contains NaN"),
        (np.zeros(61 * 16000, np.float32), 16000, "longer than this server's limit of 60 s"),
        (np.zeros((2, 4000), np.float32), 16000, "AUDIO: expected one channel"),
        (np.full(4000, 1e30, np.float32), 16000, "AUDIO: peak amplitude 1e\\+30 is beyond 2"),
        (np.r_[np.zeros(3999), -2.01].astype(np.float32), 16000, "AUDIO: peak amplitude 2.01 is beyond 2"),
        (np.full(4000, 12000, np.float32), 16000, "scale 16-bit PCM by 1/32768"),
    ],
)
def test_bad_audio(audio, rate, message):
    with pytest.raises(InvalidInput, match=message):
        check_audio(audio, rate, max_seconds=60)


def test_good_audio_passes():
    check_audio(np.zeros(3000, np.float32), 16000, max_seconds=60)
    check_audio(np.r_[np.zeros(3999), 1.3, -2.0].astype(np.float32), 16000, max_seconds=60)  # decoders overshoot


def test_a_long_name_is_quoted_in_part():
    with pytest.raises(InvalidInput) as error:
        check_avatar("x" * 100_000, exists=lambda _: True)
    assert str(error.value).startswith("AVATAR: invalid avatar name '" + "x" * 64 + "'... (100000 characters)")
    assert len(str(error.value)) < 256


@pytest.mark.parametrize("rate", [0, -16000, 7999, 192001])
def test_bad_sample_rate(rate):
    with pytest.raises(InvalidInput, match="SAMPLE_RATE"):
        check_sample_rate(rate)


@pytest.mark.parametrize("name", ["../x", "/etc", "a\x00b", "", "A" * 70, "Demo", "a b"])
def test_avatar_names_that_could_be_paths_are_refused(name):
    with pytest.raises(InvalidInput, match="AVATAR: invalid avatar name"):
        check_avatar(name, exists=lambda _: True)


def test_unknown_avatar():
    with pytest.raises(InvalidInput, match="AVATAR: unknown avatar 'ghost'"):
        check_avatar("ghost", exists=lambda _: False)


def test_start_frame():
    with pytest.raises(InvalidInput, match="START_FRAME: must be >= 0"):
        check_start_frame(-1)
    check_start_frame(0)
    check_start_frame(10**9)


def test_stream_segment_inputs():
    from lipsync_server.backend.request_rules import check_audio_offset, frame_range

    check_audio_offset(6400, 16000)
    with pytest.raises(InvalidInput, match="AUDIO_OFFSET: must be a multiple of 3200"):
        check_audio_offset(1000, 16000)
    with pytest.raises(InvalidInput, match="AUDIO_OFFSET: streamed segments must be 16000 Hz"):
        check_audio_offset(3200, 44100)
    assert frame_range(None, None, 24) == (0, 24)
    assert frame_range(10, None, 24) == (10, 14)
    with pytest.raises(InvalidInput, match="FIRST_FRAME: 24 is outside this audio's 24 frames"):
        frame_range(24, None, 24)
    with pytest.raises(InvalidInput, match="FRAME_COUNT: 5 frames from FIRST_FRAME 20 do not fit in 24 frames"):
        frame_range(20, 5, 24)


def test_wait_bound_range():
    from lipsync_server.backend.request_rules import check_max_wait_ms

    for good in (None, 1, 250, 3_600_000):
        check_max_wait_ms(good)
    for bad in (0, -1, 3_600_001):
        with pytest.raises(InvalidInput, match=f"MAX_WAIT_MS: must be 1-3600000 milliseconds, got {bad}"):
            check_max_wait_ms(bad)


def test_frames_are_made_smaller_never_larger():
    from lipsync_server.backend.request_rules import frame_size

    assert frame_size(None, (1280, 720)) == (0, 0)  # absent: the avatar's own
    assert frame_size(np.array([640, 360]), (1280, 720)) == (640, 360)
    assert frame_size(np.array([1280, 720]), (1280, 720)) == (0, 0)
    assert frame_size(np.array([1920, 1080]), (1280, 720)) == (0, 0)  # larger: the avatar's own
    with pytest.raises(InvalidInput, match="FRAME_SIZE: expected \\[width, height\\], got shape \\[3\\]"):
        frame_size(np.array([1, 2, 3]), (1280, 720))
    with pytest.raises(InvalidInput, match="FRAME_SIZE: 0x360: each side must be 16-16384 pixels"):
        frame_size(np.array([0, 360]), (1280, 720))
