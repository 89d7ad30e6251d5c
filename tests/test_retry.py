"""Which failed requests a stream's segment sends again (lipsync.retry): what may pass, never a
step's own final answer."""

import pytest
from tritonclient.utils import InferenceServerException

from lipsync.retry import passing


@pytest.mark.parametrize(
    "status, message",
    [
        ("StatusCode.UNAVAILABLE", "server busy: expected wait 3.1 s"),
        ("StatusCode.DEADLINE_EXCEEDED", "Deadline Exceeded"),
        ("StatusCode.NOT_FOUND", "Request for unknown model: 'lipsync' is not found"),
        ("StatusCode.UNAVAILABLE", "Request for unknown model: 'lipsync_faces' has no available versions"),
    ],
)
def test_a_server_away_busy_or_between_starts_is_worth_another_try(status, message):
    assert passing(InferenceServerException(message, status))
    assert passing(ConnectionRefusedError())


@pytest.mark.parametrize(
    "status, message",
    [
        (
            "StatusCode.INVALID_ARGUMENT",
            "in ensemble 'lipsync', AVATAR: avatar 'demo' (version 7) is not loaded "
            "(Model 'avatar_demo' is not ready.)",
        ),
        ("StatusCode.INVALID_ARGUMENT", "in ensemble 'lipsync', AUDIO: is empty"),
        ("StatusCode.INTERNAL", "face generation failed"),
    ],
)
def test_a_steps_own_answer_is_final(status, message):
    assert not passing(InferenceServerException(message, status))
