"""Python client of the lip-sync server, over tritonclient gRPC (default) or HTTP.

client = LipsyncClient("127.0.0.1:8001")
client.wait_until_ready()
frames = client.render(audio, 16000, avatar="demo")          # list of JPEG bytes
for jpeg in client.render_chunks(long_audio, 44100, "demo"):  # several requests in flight
    ...

The rooms under it: transport.py (tritonclient, keys, cancellation, the cold-start wait),
retry.py (which failures are passing), administration.py (avatars, health, statistics),
render_request.py (what a render asks), resampling.py (any rate to 16 kHz as a stream comes).
"""

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tenacity

from lipsync_protocol import framing
from lipsync_protocol.ensemble import ENSEMBLE, RAW_ENSEMBLE

from . import administration, retry, streaming
from .administration import Avatar
from .render_request import RenderRequest
from .resampling import StreamResampler
from .streaming import Segment
from .transport import Cancelled, Transport, infer_inputs

# Importable from here as before the rooms: kept for one release.
__all__ = ["ENSEMBLE", "RAW_ENSEMBLE", "Avatar", "Cancelled", "LipsyncClient", "StreamResampler", "infer_inputs"]


class LipsyncClient:
    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        protocol: str = "grpc",
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        admin_key: str | None = None,
        inference_key: str | None = None,
        cold_start_wait_s: float = 120.0,
        retry_for_s: float = 30.0,
    ):
        """`admin_key`: the server's administrator key, sent (header lipsync-admin-key) with the
        calls that list, load and unload avatars and read statistics only. `inference_key`: the
        key inference over HTTP needs (header lipsync-inference-key). Defaults: $LIPSYNC_ADMIN_KEY
        and $LIPSYNC_INFERENCE_KEY, or for a server on this machine the launcher's key files
        (lipsync_protocol.keys).
        `cold_start_wait_s`: how long a request keeps retrying while the server loads its
        avatar on demand (the server says when to retry); 0 returns that refusal at once.
        `retry_for_s`: how long stream() and render_chunks() retry a segment that failed for a
        passing reason (the server unreachable, busy, stopping or starting), with backoff: each
        segment carries its audio context, so a retry, on this server or, behind a load
        balancer, on another, gives the same frames. render() itself does not retry."""
        self.transport = Transport(url, protocol, headers, timeout_s, admin_key, inference_key)
        self.cold_start_wait_s = cold_start_wait_s
        self.retry_for_s = retry_for_s
        self.segments_retried = 0  # sends of a segment after its first, for reports and tests
        self._lock = threading.Lock()

    @property
    def triton(self):
        """The underlying tritonclient client (for this thread)."""
        return self.transport.triton

    # What it was made with, as the transport holds it.
    url = property(lambda self: self.transport.url)
    protocol = property(lambda self: self.transport.protocol)
    timeout_s = property(lambda self: self.transport.timeout_s)
    headers = property(lambda self: self.transport.headers)  # with the inference key
    admin_headers = property(lambda self: self.transport.admin_headers)  # with both keys

    # Health and avatars (administration.py) ---------------------------------------------------

    def is_ready(self) -> bool:
        return administration.is_ready(self.transport)

    def wait_until_ready(self, timeout_s: float = 120.0) -> None:
        administration.wait_until_ready(self.transport, timeout_s)

    def health(self) -> dict:
        return administration.health(self.transport)

    def statistics(self) -> dict[str, dict]:
        """Per model (and version): successful requests, executions, average queue and compute ms."""
        return administration.statistics(self.transport)

    def avatars(self, figures: bool = True) -> list[Avatar]:
        """Every avatar in the server's repository with its versions' states; `figures`: with
        the loaded ones' creation figures too (a config call per loaded avatar)."""
        return administration.avatars(self.transport, figures)

    def load_avatar(self, name: str) -> None:
        administration.load(self.transport, name)

    def unload_avatar(self, name: str) -> None:
        administration.unload(self.transport, name)

    # Rendering ----------------------------------------------------------------------------

    def render(
        self,
        audio: np.ndarray,
        sample_rate: int,
        avatar: str,
        version: int | None = None,
        start_frame: int = 0,
        segment: Segment | None = None,
        max_wait_s: float | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> list[bytes]:
        """JPEG frames (25 fps) of `avatar` speaking `audio` (mono float32 in [-1, 1]); `segment`
        renders part of a stream (see stream()). `max_wait_s`: the time from its arrival by
        which the request's frames must be done; one that the work ahead and its own frames
        would take past it is refused at once with UNAVAILABLE ("server busy: ..."). Default:
        the server's (it may queue 20 s for a clip, 1 s for a segment, then take its own time).
        `frame_size`: (width, height) of the frames; default, or larger than the avatar's own:
        its own (frames are made smaller, never larger)."""
        request = RenderRequest(audio, sample_rate, avatar, version, start_frame, segment, max_wait_s, frame_size)
        return self.render_request(request)

    def render_request(self, request: RenderRequest) -> list[bytes]:
        """render() of a RenderRequest."""
        return self.render_in_loop_request(request)[0]

    def render_in_loop(
        self,
        audio: np.ndarray,
        sample_rate: int,
        avatar: str,
        version: int | None = None,
        start_frame: int = 0,
        segment: Segment | None = None,
        max_wait_s: float | None = None,
        frame_size: tuple[int, int] | None = None,
    ) -> tuple[list[bytes], int]:
        """render(), and the avatar's frame count: its loop walks frames 0 .. count - 1 and back
        (framing.pingpong), which a client following the loop between requests needs."""
        request = RenderRequest(audio, sample_rate, avatar, version, start_frame, segment, max_wait_s, frame_size)
        return self.render_in_loop_request(request)

    def render_in_loop_request(self, request: RenderRequest) -> tuple[list[bytes], int]:
        answer = self._infer(ENSEMBLE, ("FRAMES", "LOOP_FRAMES"), request)
        return [bytes(jpeg) for jpeg in answer["FRAMES"].reshape(-1)], int(answer["LOOP_FRAMES"].reshape(-1)[0])

    def render_faces(
        self,
        audio: np.ndarray,
        sample_rate: int,
        avatar: str,
        version: int | None = None,
        start_frame: int = 0,
        segment: Segment | None = None,
        max_wait_s: float | None = None,
    ) -> list[np.ndarray]:
        """The network's own output per frame (float [3, 320, 320], BGR) instead of JPEGs, from
        the lipsync_faces model: for parity checks and debugging."""
        return self._faces(RenderRequest(audio, sample_rate, avatar, version, start_frame, segment, max_wait_s))

    def _faces(self, request: RenderRequest) -> list[np.ndarray]:
        return list(self._infer(RAW_ENSEMBLE, ("FACES_RAW",), request)["FACES_RAW"][0])

    def stream(
        self,
        chunks: Iterable[np.ndarray],
        sample_rate: int,
        avatar: str,
        version: int | None = None,
        start_frame: int = 0,
        max_in_flight: int = 2,
        max_wait_s: float | None = None,
    ) -> Iterator[bytes]:
        """Live rendering: takes audio chunks as they arrive (any sizes) and yields JPEG frames in
        order as soon as they can be rendered exactly, continuing the avatar's loop; the end of
        `chunks` flushes the rest. Frames are identical to rendering the whole clip at once
        (for audio at 16 kHz; other rates are resampled here, chunk by chunk, first). A frame
        needs streaming.LOOKAHEAD_SECONDS (0.49 s) of audio past its start. A segment the server
        cannot make within `max_wait_s` (default: the server's: 1 s of queueing, then its own
        frames' time) is refused at once and retried (see retry_for_s), behind a load balancer
        on another replica."""
        stream = RenderRequest(np.zeros(0, np.float32), sample_rate, avatar, version, start_frame, None, max_wait_s)
        return self._stream(self.render_request, chunks, stream, max_in_flight)

    def stream_faces(
        self,
        chunks: Iterable[np.ndarray],
        sample_rate: int,
        avatar: str,
        version: int | None = None,
        start_frame: int = 0,
        max_in_flight: int = 2,
        max_wait_s: float | None = None,
    ) -> Iterator[np.ndarray]:
        """stream(), yielding the network's output per frame as render_faces() does."""
        stream = RenderRequest(np.zeros(0, np.float32), sample_rate, avatar, version, start_frame, None, max_wait_s)
        return self._stream(self._faces, chunks, stream, max_in_flight)

    def render_chunks(
        self,
        audio: np.ndarray,
        sample_rate: int,
        avatar: str,
        version: int | None = None,
        start_frame: int = 0,
        chunk_seconds: float = 4.0,
        max_in_flight: int = 4,
        max_wait_s: float = 30.0,
    ) -> Iterator[bytes]:
        """Renders a whole clip as requests of `chunk_seconds` of video each, up to
        `max_in_flight` at once, yielding frames in order. Each request carries the audio context
        its frames depend on (the segments stream() sends), so the frames are those of one
        request for the whole clip, as many and identical (for 16 kHz audio; other rates are
        resampled here first, to the length the server's resampling gives). Each request's
        frames must be done within `max_wait_s` on the server: a clip is not live, its chunks can
        wait."""
        if sample_rate != framing.SAMPLE_RATE:
            resampler = StreamResampler(sample_rate)
            audio = np.concatenate([resampler.push(np.asarray(audio, np.float32)), resampler.push(None)])
        clip = RenderRequest(audio, framing.SAMPLE_RATE, avatar, version, start_frame, None, max_wait_s)
        chunk_frames = max(1, round(chunk_seconds * framing.FPS))
        pending: deque = deque()
        with ThreadPoolExecutor(max_in_flight) as pool:
            for part in streaming.clip_segments(len(audio), chunk_frames):
                if len(pending) == max_in_flight:
                    yield from pending.popleft().result()
                request = clip.part(audio[part.begin : part.end], part)
                pending.append(pool.submit(self.render_segment, self.render_request, request))
            while pending:
                yield from pending.popleft().result()

    def render_segment(self, render: Callable[[RenderRequest], list], request: RenderRequest) -> list:
        """One segment of a stream or clip (RenderRequest.part), rendered by `render` and retried
        with backoff while it fails for a passing reason (retry.py)."""
        retrying = retry.segment_retrying(self.retry_for_s, self.transport.sleep_unless_cancelled, self._count_retry)
        return retrying(render, request)

    def cancel(self) -> None:
        """Stops every request of this client: calls not yet sent are never sent (they raise
        Cancelled), and over gRPC the calls in flight are cancelled, which the server acts on
        before a request's next step (a step already running, such as making its frames,
        finishes). For a stream whose viewer has gone: keep its segments short."""
        self.transport.cancel()

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "LipsyncClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _infer(self, model: str, outputs: tuple[str, ...], request: RenderRequest) -> dict[str, np.ndarray]:
        return self.transport.infer(model, outputs, request.tensors(), self.cold_start_wait_s)

    def _stream(self, render, chunks, stream: RenderRequest, max_in_flight: int) -> Iterator:
        sample_rate = stream.sample_rate
        resampler = None if sample_rate == framing.SAMPLE_RATE else StreamResampler(sample_rate)
        kept, base, received, emitted = np.zeros(0, np.float32), 0, 0, 0
        pending: deque = deque()
        with ThreadPoolExecutor(max_in_flight) as pool:

            def submit(upto: int):
                nonlocal emitted, kept, base
                part = streaming.segment(emitted, upto, received)
                request = stream.part(kept[part.begin - base : part.end - base], part)
                pending.append(pool.submit(self.render_segment, render, request))
                emitted = upto
                # Later segments start no earlier than this one's context: drop what precedes it.
                keep_from = streaming.segment(emitted, emitted, received).begin
                kept, base = kept[keep_from - base :], keep_from

            def receive(samples: np.ndarray):
                nonlocal kept, received
                kept, received = np.concatenate([kept, samples]), received + len(samples)

            for chunk in chunks:
                samples = np.asarray(chunk, np.float32).reshape(-1)
                receive(samples if resampler is None else resampler.push(samples))
                ready = streaming.ready_frames(received)
                if ready > emitted:
                    submit(ready)
                while pending and (pending[0].done() or len(pending) > max_in_flight):
                    yield from pending.popleft().result()
            if resampler is not None:
                receive(resampler.push(None))
            total = framing.frame_count(received)
            if total > emitted:
                submit(total)
            while pending:
                yield from pending.popleft().result()

    def _count_retry(self, _state: tenacity.RetryCallState) -> None:
        with self._lock:
            self.segments_retried += 1
