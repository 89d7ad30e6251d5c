"""The gateway's checks of what a page sends, and whom it answers (no server needed)."""

import numpy as np
import pytest

from lipsync.web.gateway import BadMessage, control, pcm16, start_message, to_pcm16
from lipsync.web.guard import origins_for


def test_a_session_starts_with_a_mode_a_valid_avatar_and_a_version():
    assert start_message('{"type": "live", "avatar": "demo", "version": 2}') == ("live", "demo", 2)
    assert start_message('{"type": "file", "avatar": "demo", "version": 0}') == ("file", "demo", None)
    for text, problem in [
        ("not json", "expected a JSON message, got 'not json'"),
        ('{"type": "upload"}', "the first message must be"),
        ('{"type": "live"}', "avatar: pick one"),
        ('{"type": "live", "avatar": "../etc"}', "avatar: invalid avatar name '../etc'"),
        ('{"type": "live", "avatar": "demo", "version": -1}', "version: a number >= 1"),
        ('{"type": "live", "avatar": "demo", "version": "2"}', "version: a number >= 1"),
        ("x" * 100_000, "got 'xxxxxxxx"),
    ]:
        with pytest.raises(BadMessage, match=problem) as error:
            start_message(text)
        assert len(str(error.value)) < 200  # a long message is quoted in part


def test_live_audio_is_16_bit_pcm_in_chunks_of_at_most_a_second():
    assert np.allclose(pcm16(np.array([0, 16384, -32768], "<i2").tobytes()), [0.0, 0.5, -1.0])
    with pytest.raises(BadMessage, match="odd number of bytes"):
        pcm16(b"\x00\x01\x02")
    with pytest.raises(BadMessage, match="at most 1 s"):
        pcm16(bytes(2 * 16000 + 2))
    every_value = np.arange(-32768, 32768).astype("<i2").tobytes()
    assert to_pcm16(pcm16(every_value[:32000])) == every_value[:32000]  # what goes out is what came in
    assert to_pcm16(pcm16(every_value[-32000:])) == every_value[-32000:]


def test_a_running_stream_takes_stop_and_interrupt_only():
    assert control('{"type":"stop"}') == "stop" and control('{"type": "interrupt"}') == "interrupt"
    for text in ("stop", '{"type": "live"}'):
        with pytest.raises(BadMessage, match="a stream is running"):
            control(text)


def test_the_gateway_answers_its_own_origins_only():
    assert origins_for("127.0.0.1", 8080, []) == {
        "http://127.0.0.1:8080",
        "http://localhost:8080",
    }
    public = origins_for("127.0.0.1", 8080, ["https://lipsync.example.com"])
    assert public == {"http://127.0.0.1:8080", "http://localhost:8080", "https://lipsync.example.com"}
    assert origins_for("0.0.0.0", 8080, []) == {"http://0.0.0.0:8080"}  # no loopback names for another host
