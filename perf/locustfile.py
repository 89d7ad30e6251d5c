"""Locust users that are live streams: each sends 200 ms of speech every 200 ms.

Requests go over HTTP: tritonclient's HTTP client is built on gevent, as Locust is, while
gRPC's threads block gevent's loop (a gRPC user hung the whole run).

Every chunk is one request for the frames it makes ready (the client's exact streaming plan),
recorded as a Locust request "chunk" with its latency. A stream keeps up when its p99 chunk
latency stays under the chunk's duration. At the end, the per-stream verdicts go to the JSON
file named by LIPSYNC_LOCUST_RESULT. Run through perf/loadtest.py (`make loadtest`).
"""

import json
import os
import time

import numpy as np
from locust import User, constant, events, task

from lipsync import streaming
from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic

# The avatar version streamed: the reference-size network unless perf/loadtest.py names another.
VERSION = int(os.environ.get("LIPSYNC_LOCUST_VERSION", synthetic.BENCHMARK_VERSION))
CHUNK_SECONDS = 0.2
CHUNK = int(framing.SAMPLE_RATE * CHUNK_SECONDS)
SPEECH = voice.speech(20.0, framing.SAMPLE_RATE, seed=5)  # each stream loops over it
STREAMS: list[list[float]] = []


class LiveStream(User):
    wait_time = constant(0)

    def on_start(self):
        self.lipsync = LipsyncClient(self.host, "http")
        self.received, self.emitted = 0, 0
        self.latencies: list[float] = []
        STREAMS.append(self.latencies)
        self.next_chunk = time.monotonic()

    @task
    def send_chunk(self):
        pause = self.next_chunk - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self.next_chunk += CHUNK_SECONDS
        self.received += CHUNK
        ready = streaming.ready_frames(self.received)
        if ready <= self.emitted:
            return
        part = streaming.segment(self.emitted, ready, self.received)
        audio = SPEECH[np.arange(part.begin, part.end) % len(SPEECH)]
        started, error, frames = time.perf_counter(), None, []
        try:
            frames = self.lipsync.render(
                audio,
                framing.SAMPLE_RATE,
                "demo",
                VERSION,
                start_frame=part.stream_frame,
                segment=part,
            )
        except Exception as exception:  # reported to Locust as a failed request
            error = exception
        elapsed_ms = (time.perf_counter() - started) * 1000
        events.request.fire(
            request_type="http",
            name="chunk",
            response_time=elapsed_ms,
            response_length=len(frames),
            exception=error,
            context={},
        )
        self.latencies.append(elapsed_ms)
        self.emitted = ready


@events.test_stop.add_listener
def record_streams(environment, **kwargs):
    path = os.environ.get("LIPSYNC_LOCUST_RESULT")
    if not path:
        return
    verdicts = [
        {
            "chunks": len(lat),
            "p99_ms": float(np.percentile(lat, 99)),
            "kept_up": float(np.percentile(lat, 99)) < CHUNK_SECONDS * 1000,
        }
        for lat in STREAMS
        if lat
    ]
    with open(path, "w") as out:
        json.dump({"streams": verdicts, "failures": environment.stats.total.num_failures}, out, indent=2)
