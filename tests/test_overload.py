"""Overload: more requests at once than face_generator takes (8 per execute and 8 queued, at
most 400 frames per execute) are refused at once with UNAVAILABLE, and every request that is
taken returns all its frames."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from lipsync import framing
from lipsync.client import LipsyncClient

pytestmark = pytest.mark.integration
AUDIO = (0.1 * np.sin(np.arange(24000) / 7)).astype(np.float32)  # 36 frames
FRAMES = framing.frame_count(len(AUDIO))


def test_overload_is_refused_fast_and_accepted_requests_complete(grpc_url):
    client = LipsyncClient(grpc_url)

    def one(start):
        began = time.monotonic()
        try:
            return len(client.render(AUDIO, 16000, "demo", start_frame=start)), time.monotonic() - began
        except InferenceServerException as error:
            return f"{error.status()} {error.message()}", time.monotonic() - began

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    served = [seconds for outcome, seconds in results if outcome == FRAMES]
    rejected = [(outcome, seconds) for outcome, seconds in results if outcome != FRAMES]
    assert len(served) >= 1 and len(rejected) >= 1, results
    for outcome, _ in rejected:
        assert outcome.startswith("StatusCode.UNAVAILABLE"), outcome
        assert "Exceeds maximum queue size" in outcome or "server busy:" in outcome, outcome
    # Refusals come back at once, not after queueing: sooner than a typical accepted request
    # (the first accepted one can finish about as fast as a refusal on a fast CPU).
    assert max(seconds for _, seconds in rejected) < statistics.median(served)
    assert len(client.render(AUDIO, 16000, "demo")) == FRAMES  # and the server serves on
