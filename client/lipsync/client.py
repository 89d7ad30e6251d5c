"""Python client of the lip-sync server, over tritonclient gRPC (default) or HTTP.

client = LipsyncClient("127.0.0.1:8001")
client.wait_until_ready()
frames = client.render(audio, 16000, avatar="demo")          # list of JPEG bytes
for jpeg in client.render_chunks(long_audio, 44100, "demo"):  # several requests in flight
    ...
"""

import json
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import av
import numpy as np
import tenacity
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lipsync_protocol import avatar_names, framing, keys, messages, waiting
from lipsync_protocol.ensemble import ENSEMBLE, RAW_ENSEMBLE

from . import streaming
from .streaming import Segment


@dataclass
class Avatar:
    name: str
    versions: dict[int, str] = field(default_factory=dict)  # version -> state ("READY", "UNAVAILABLE", ...)
    reasons: dict[int, str] = field(default_factory=dict)  # version -> why its last load failed
    # version -> the quality gates' figures of a version `lipsync-server avatar create` made
    # (psnr_db, sync_r, real_sync_r, failed); known while the avatar is loaded
    creation: dict[int, dict] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return any(state == "READY" for state in self.versions.values())


class Cancelled(RuntimeError):
    """The request was not made, or not finished, because LipsyncClient.cancel() was called."""


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
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        self.url, self.protocol = url, protocol
        self.headers = dict(headers or {}) | keys.INFERENCE.headers(
            keys.INFERENCE.for_client(url, inference_key), protocol
        )
        self.admin_headers = self.headers | keys.ADMIN.headers(keys.ADMIN.for_client(url, admin_key), protocol)
        self.timeout_s = timeout_s
        self.cold_start_wait_s = cold_start_wait_s
        self.retry_for_s = retry_for_s
        self.segments_retried = 0  # sends of a segment after its first, for reports and tests
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._calls: set = set()  # gRPC calls in flight, for cancel()
        self._local = threading.local()  # HTTP clients are not shared between threads
        self._grpc = grpcclient.InferenceServerClient(url) if protocol == "grpc" else None

    @property
    def triton(self):
        """The underlying tritonclient client (for this thread)."""
        if self._grpc is not None:
            return self._grpc
        if not hasattr(self._local, "http"):
            self._local.http = httpclient.InferenceServerClient(self.url, network_timeout=self.timeout_s or 600.0)
        return self._local.http

    # Health -------------------------------------------------------------------------------

    def is_ready(self) -> bool:
        try:
            return self.triton.is_server_ready(headers=self.headers) and self.triton.is_model_ready(
                ENSEMBLE, headers=self.headers
            )
        except (InferenceServerException, ConnectionError, OSError):
            return False

    def wait_until_ready(self, timeout_s: float = 120.0) -> None:
        waiting.until(self.is_ready, timeout_s, f"lip-sync server at {self.url} ready", interval_s=0.5)

    def health(self) -> dict:
        return {
            "live": self.triton.is_server_live(headers=self.headers),
            "ready": self.is_ready(),
            "avatars": {a.name: a.versions for a in self.avatars(figures=False)},
        }

    def statistics(self) -> dict[str, dict]:
        """Per model (and version): successful requests, executions, average queue and compute ms."""
        raw = self.triton.get_inference_statistics(headers=self.admin_headers, **self._as_json())
        report = {}
        for entry in raw.get("model_stats", []):
            stats = entry.get("inference_stats", {})
            ok = int(stats.get("success", {}).get("count", 0))
            report[f"{entry['name']}/{entry['version']}"] = {
                "requests": ok,
                "failures": int(stats.get("fail", {}).get("count", 0)),
                "executions": int(entry.get("execution_count", 0)),
                "inferences": int(entry.get("inference_count", 0)),
                "avg_queue_ms": _mean_ms(stats.get("queue", {}), ok),
                "avg_compute_ms": _mean_ms(stats.get("compute_infer", {}), ok),
                "last_inference_ms": int(entry.get("last_inference", 0)),
            }
        return report

    # Avatars ------------------------------------------------------------------------------

    def avatars(self, figures: bool = True) -> list[Avatar]:
        """Every avatar in the server's repository with its versions' states; `figures`: with
        the loaded ones' creation figures too (a config call per loaded avatar)."""
        index = self.triton.get_model_repository_index(headers=self.admin_headers, **self._as_json())
        entries = index.get("models", index) if isinstance(index, dict) else index
        found: dict[str, Avatar] = {}
        for entry in entries:
            name = avatar_names.avatar_name(entry["name"])
            if name is None:
                continue
            item = found.setdefault(name, Avatar(name))
            if entry.get("version"):
                item.versions[int(entry["version"])] = entry.get("state", "UNKNOWN")
                if entry.get("reason") and entry.get("state") != "READY":
                    item.reasons[int(entry["version"])] = entry["reason"]
        for item in found.values():
            if figures and item.ready:
                item.creation = self._creation_reports(item.name)
        return sorted(found.values(), key=lambda a: a.name)

    def _creation_reports(self, name: str) -> dict[int, dict]:
        """The loaded avatar model's config parameter "creation" (the server's repository
        writes it: JSON, version -> figures)."""
        try:
            config = self.triton.get_model_config(
                avatar_names.model_name(name), headers=self.admin_headers, **self._as_json()
            )
        except InferenceServerException:  # unloaded since the index was read
            return {}
        config = config.get("config", config)
        text = config.get("parameters", {}).get("creation", {}).get("string_value")
        try:
            return {int(version): figures for version, figures in json.loads(text).items()} if text else {}
        except (ValueError, AttributeError):  # written by hand: shown as absent
            return {}

    def load_avatar(self, name: str) -> None:
        self.triton.load_model(avatar_names.model_name(name), headers=self.admin_headers)

    def unload_avatar(self, name: str) -> None:
        self.triton.unload_model(avatar_names.model_name(name), headers=self.admin_headers)

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
        frames, _ = self.render_in_loop(
            audio, sample_rate, avatar, version, start_frame, segment, max_wait_s, frame_size
        )
        return frames

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
        answer = self._infer(
            ENSEMBLE,
            ("FRAMES", "LOOP_FRAMES"),
            audio,
            sample_rate,
            avatar,
            version,
            start_frame,
            segment,
            max_wait_s,
            frame_size,
        )
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
        faces = self._infer(
            RAW_ENSEMBLE, ("FACES_RAW",), audio, sample_rate, avatar, version, start_frame, segment, max_wait_s
        )["FACES_RAW"]
        return list(faces[0])

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
        return self._stream(self.render, chunks, sample_rate, avatar, version, start_frame, max_in_flight, max_wait_s)

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
        return self._stream(
            self.render_faces, chunks, sample_rate, avatar, version, start_frame, max_in_flight, max_wait_s
        )

    def _infer(
        self, model, outputs, audio, sample_rate, avatar, version, start_frame, segment, max_wait_s, frame_size=None
    ) -> dict[str, np.ndarray]:
        module = grpcclient if self.protocol == "grpc" else httpclient
        audio = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
        tensors = [
            ("AUDIO", audio, "FP32"),
            ("SAMPLE_RATE", np.array([[sample_rate]], np.int32), "INT32"),
            ("AVATAR", np.array([[avatar.encode()]], np.object_), "BYTES"),
            ("START_FRAME", np.array([[start_frame]], np.int64), "INT64"),
        ]
        if version is not None:
            tensors.append(("AVATAR_VERSION", np.array([[version]], np.int64), "INT64"))
        if segment is not None:
            for name, number in (
                ("AUDIO_OFFSET", segment.begin),
                ("FIRST_FRAME", segment.first),
                ("FRAME_COUNT", segment.count),
            ):
                tensors.append((name, np.array([[number]], np.int64), "INT64"))
        if max_wait_s is not None:
            tensors.append(("MAX_WAIT_MS", np.array([[max(1, round(max_wait_s * 1000))]], np.int64), "INT64"))
        if frame_size is not None:
            tensors.append(("FRAME_SIZE", np.array([frame_size], np.int64), "INT64"))
        deadline = time.monotonic() + self.cold_start_wait_s
        while True:
            if self._cancelled.is_set():
                raise Cancelled("the client was cancelled")
            try:
                inputs, wanted = infer_inputs(module, tensors), [module.InferRequestedOutput(o) for o in outputs]
                answer = self._send(model, inputs, wanted)
                return {name: answer.as_numpy(name) for name in outputs}
            except InferenceServerException as error:
                wait = messages.retry_after(error.message() or "")
                if wait is None or time.monotonic() + wait > deadline:
                    raise
                self._cancelled.wait(wait)

    def _send(self, model, inputs, outputs):
        """One inference request. Over gRPC, as a call that cancel() can cancel on the server."""
        if self._grpc is None:
            return self.triton.infer(model, inputs, outputs=outputs, headers=self.headers)
        done, answer = threading.Event(), {}

        def finished(result, error):
            answer.update(result=result, error=error)
            done.set()

        call = self._grpc.async_infer(
            model, inputs, finished, outputs=outputs, headers=self.headers, client_timeout=self.timeout_s
        )
        with self._lock:
            self._calls.add(call)
        if self._cancelled.is_set():
            call.cancel()
        done.wait()
        with self._lock:
            self._calls.discard(call)
        if answer["error"] is not None:
            raise Cancelled("the client was cancelled") if self._cancelled.is_set() else answer["error"]
        return answer["result"]

    def cancel(self) -> None:
        """Stops every request of this client: calls not yet sent are never sent (they raise
        Cancelled), and over gRPC the calls in flight are cancelled, which the server acts on
        before a request's next step (a step already running, such as making its frames,
        finishes). For a stream whose viewer has gone: keep its segments short."""
        self._cancelled.set()
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    def _stream(self, render, chunks, sample_rate, avatar, version, start_frame, max_in_flight, max_wait_s) -> Iterator:
        resampler = None if sample_rate == framing.SAMPLE_RATE else StreamResampler(sample_rate)
        kept, base, received, emitted = np.zeros(0, np.float32), 0, 0, 0
        pending: deque = deque()
        with ThreadPoolExecutor(max_in_flight) as pool:

            def submit(upto: int):
                nonlocal emitted, kept, base
                part = streaming.segment(emitted, upto, received)
                audio = kept[part.begin - base : part.end - base]
                pending.append(
                    pool.submit(self._segment, render, audio, avatar, version, start_frame, part, max_wait_s)
                )
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
        chunk_frames = max(1, round(chunk_seconds * framing.FPS))
        pending: deque = deque()
        with ThreadPoolExecutor(max_in_flight) as pool:
            for part in streaming.clip_segments(len(audio), chunk_frames):
                if len(pending) == max_in_flight:
                    yield from pending.popleft().result()
                audio_part = audio[part.begin : part.end]
                pending.append(
                    pool.submit(self._segment, self.render, audio_part, avatar, version, start_frame, part, max_wait_s)
                )
            while pending:
                yield from pending.popleft().result()

    def _segment(self, render, audio, avatar, version, start_frame, part: Segment, max_wait_s):
        """One segment of a stream or clip (16 kHz audio, `start_frame` the stream's), rendered
        by `render` and retried with backoff while it fails for a passing reason."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_passing),
            wait=waiting.jittered_backoff(0.25, 4.0),
            stop=tenacity.stop_before_delay(self.retry_for_s),
            sleep=self._sleep_unless_cancelled,
            before_sleep=self._count_retry,
            reraise=True,
        )
        frame = start_frame + part.stream_frame
        return retrying(render, audio, framing.SAMPLE_RATE, avatar, version, frame, part, max_wait_s)

    def _sleep_unless_cancelled(self, seconds: float) -> None:
        if self._cancelled.wait(seconds):
            raise Cancelled("the client was cancelled")

    def _count_retry(self, _state: tenacity.RetryCallState) -> None:
        with self._lock:
            self.segments_retried += 1

    def close(self) -> None:
        if self._grpc is not None:
            self._grpc.close()

    def __enter__(self) -> "LipsyncClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _as_json(self) -> dict:
        return {"as_json": True} if self.protocol == "grpc" else {}


def infer_inputs(module, tensors: Iterable[tuple[str, np.ndarray, str]]) -> list:
    """tritonclient inputs (`module`: tritonclient.grpc or tritonclient.http) from (name, array,
    Triton type) triples."""
    inputs = []
    for name, value, dtype in tensors:
        tensor = module.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def _passing(error: BaseException) -> bool:
    """Whether a failed request may succeed if sent again: the server was unreachable, busy
    (UNAVAILABLE), too slow (DEADLINE_EXCEEDED), or not serving the pipeline at this moment
    (stopping or starting: the ensemble is not loaded)."""
    if isinstance(error, ConnectionError):
        return True
    if not isinstance(error, InferenceServerException):
        return False
    status, message = str(error.status() or ""), error.message() or ""
    if any(code in status for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "503", "502", "504")):
        return True
    pipeline_gone = "unknown model" in message or "not ready" in message
    return pipeline_gone and any(f"'{ensemble}'" in message for ensemble in (ENSEMBLE, RAW_ENSEMBLE))


def _mean_ms(duration: dict, count: int) -> float:
    return round(int(duration.get("ns", 0)) / 1e6 / count, 3) if count else 0.0


class StreamResampler:
    """Resamples a stream to 16 kHz chunk by chunk (FFmpeg's resampler keeps its state); at the
    end (push(None)) the output has the length the server's resampling would give the input."""

    def __init__(self, rate: int):
        self.rate = rate
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=framing.SAMPLE_RATE)
        self.taken = self.given = 0

    def push(self, samples: np.ndarray | None) -> np.ndarray:
        frame = None
        if samples is not None:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.rate
            self.taken += samples.size
        out = [f.to_ndarray().reshape(-1) for f in self.resampler.resample(frame)]
        if samples is None:  # FFmpeg's flush can fall a sample short of that length
            out.append(
                np.zeros(max(0, framing.resampled_length(self.taken, self.rate) - self.given - sum(map(len, out))))
            )
        resampled = np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
        self.given += resampled.size
        return resampled
