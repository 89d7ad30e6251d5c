"""The pipeline's own metrics on Triton's metrics port: refusals counted by reason where they
happen, the expected wait and the frames in the works while a request is being made, and the
docs/operations.md's list of metrics is what the server serves."""

import re
import threading
from pathlib import Path

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from lipsync.client import LipsyncClient
from lipsync_protocol import framing, waiting
from lipsync_server.calibration import voice

pytestmark = pytest.mark.integration
OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def test_bad_input_is_counted_where_it_is_refused(server, grpc_url):
    before = server.metrics().total("lipsync_requests_refused_total", model="request_validator", reason="bad_input")
    with pytest.raises(InferenceServerException):
        LipsyncClient(grpc_url).render(np.zeros(16000, np.float32), 16000, "nosuchavatar")
    after = server.metrics().total("lipsync_requests_refused_total", model="request_validator", reason="bad_input")
    assert after == before + 1


def test_the_expected_wait_is_published_while_frames_are_in_the_works(server, grpc_url):
    client = LipsyncClient(grpc_url)
    audio = voice.speech(12.0, framing.SAMPLE_RATE, seed=11)
    client.render(audio[:16000], framing.SAMPLE_RATE, "demo")  # the service rate is measured
    frames = framing.frame_count(len(audio))
    rendered = threading.Event()
    worker = threading.Thread(target=lambda: (client.render(audio, framing.SAMPLE_RATE, "demo"), rendered.set()))
    worker.start()
    try:
        # Seen while the request is in the works (twelve seconds of frames: seconds on any CPU).
        in_flight = waiting.until(
            lambda: rendered.is_set() or server.metrics().total("lipsync_frames_in_flight") > 0,
            timeout_s=120,
            what="the request's frames in lipsync_frames_in_flight",
        )
        metrics = server.metrics()
        assert not rendered.is_set() and in_flight is True
        assert 0 < metrics.total("lipsync_frames_in_flight") <= frames
        assert metrics.total("lipsync_expected_wait_seconds") > 0
    finally:
        worker.join()
    assert rendered.is_set()
    metrics = server.metrics()
    assert metrics.total("lipsync_frames_in_flight") == 0 and metrics.total("lipsync_expected_wait_seconds") == 0


def test_the_readme_lists_every_metric_the_pipeline_serves(server, grpc_url):
    LipsyncClient(grpc_url).render(np.zeros(16000, np.float32), 16000, "demo")
    served = {re.sub(r"_(bucket|count|sum)$", "", s.name) for s in server.metrics().samples}
    served = {name for name in served if name.startswith("lipsync_")}
    section = OPERATIONS.read_text().split("### Metrics", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"^\| `(lipsync_\w+)`", section, re.M))
    assert served == listed
