"""Python client of the lip-sync server, over tritonclient gRPC (default) or HTTP.

    client = LipsyncClient("127.0.0.1:8001")
    client.wait_until_ready()
    frames = client.render(audio, 16000, avatar="demo")          # list of JPEG bytes
    for jpeg in client.render_chunks(long_audio, 44100, "demo"):  # several requests in flight
        ...
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from . import avatar as avatar_names
from . import framing

ENSEMBLE = "lipsync"


@dataclass
class Avatar:
    name: str
    versions: dict[int, str] = field(default_factory=dict)  # version -> state ("READY", "UNAVAILABLE", ...)

    @property
    def ready(self) -> bool:
        return any(state == "READY" for state in self.versions.values())


class LipsyncClient:
    def __init__(self, url: str = "127.0.0.1:8001", protocol: str = "grpc", headers: dict[str, str] | None = None,
                 timeout_s: float | None = None):
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        self.url, self.protocol = url, protocol
        self.headers = headers or {}
        self.timeout_s = timeout_s
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
            return self.triton.is_server_ready(headers=self.headers) and self.triton.is_model_ready(ENSEMBLE, headers=self.headers)
        except (InferenceServerException, ConnectionError, OSError):
            return False

    def wait_until_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.is_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"lip-sync server at {self.url} not ready after {timeout_s:.0f} s")
            time.sleep(0.5)

    def health(self) -> dict:
        return {
            "live": self.triton.is_server_live(headers=self.headers),
            "ready": self.is_ready(),
            "avatars": {a.name: a.versions for a in self.avatars()},
        }

    def statistics(self) -> dict[str, dict]:
        """Per model (and version): successful requests, executions, average queue and compute ms."""
        raw = self.triton.get_inference_statistics(headers=self.headers, **self._as_json())
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

    def avatars(self) -> list[Avatar]:
        index = self.triton.get_model_repository_index(headers=self.headers, **self._as_json())
        entries = index.get("models", index) if isinstance(index, dict) else index
        found: dict[str, Avatar] = {}
        for entry in entries:
            name = avatar_names.avatar_name(entry["name"])
            if name is None:
                continue
            item = found.setdefault(name, Avatar(name))
            if entry.get("version"):
                item.versions[int(entry["version"])] = entry.get("state", "UNKNOWN")
        return sorted(found.values(), key=lambda a: a.name)

    def load_avatar(self, name: str) -> None:
        self.triton.load_model(avatar_names.model_name(name), headers=self.headers)

    def unload_avatar(self, name: str) -> None:
        self.triton.unload_model(avatar_names.model_name(name), headers=self.headers)

    # Rendering ----------------------------------------------------------------------------

    def render(self, audio: np.ndarray, sample_rate: int, avatar: str, version: int | None = None,
               start_frame: int = 0) -> list[bytes]:
        """JPEG frames (25 fps) of `avatar` speaking `audio` (mono float32 in [-1, 1])."""
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
        inputs = []
        for name, value, dtype in tensors:
            tensor = module.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput("FRAMES")]
        kwargs = {"client_timeout": self.timeout_s} if self.protocol == "grpc" and self.timeout_s else {}
        result = self.triton.infer(ENSEMBLE, inputs, outputs=outputs, headers=self.headers, **kwargs)
        return [bytes(jpeg) for jpeg in result.as_numpy("FRAMES").reshape(-1)]

    def render_chunks(self, audio: np.ndarray, sample_rate: int, avatar: str, version: int | None = None,
                      start_frame: int = 0, chunk_seconds: float = 4.0, max_in_flight: int = 4) -> Iterator[bytes]:
        """Renders long audio as independent chunks with up to `max_in_flight` requests at once,
        yielding frames in order as soon as each chunk's turn comes. The avatar's loop continues
        across chunks. Chunk edges are cut on whole video frames; each chunk is rendered with
        its own audio only, so frames next to an edge can differ slightly from rendering the
        whole clip in one request."""
        plan = chunk_plan(len(audio), sample_rate, chunk_seconds, start_frame)
        with ThreadPoolExecutor(max_in_flight) as pool:
            pending = []
            for begin, end, first_frame in plan:
                pending.append(pool.submit(self.render, audio[begin:end], sample_rate, avatar, version, first_frame))
            for future in pending:
                yield from future.result()

    def close(self) -> None:
        if self._grpc is not None:
            self._grpc.close()

    def __enter__(self) -> "LipsyncClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _as_json(self) -> dict:
        return {"as_json": True} if self.protocol == "grpc" else {}


def chunk_plan(samples: int, sample_rate: int, chunk_seconds: float, start_frame: int = 0) -> list[tuple[int, int, int]]:
    """(first sample, end sample, start frame) of each chunk: whole video frames per chunk, and
    a too-short tail merged into the chunk before it."""
    per_frame = sample_rate / framing.FPS
    step = max(1, round(chunk_seconds * framing.FPS)) * per_frame
    minimum = -(-framing.MIN_SAMPLES * sample_rate // framing.SAMPLE_RATE)
    edges = [round(k * step) for k in range(int(samples // step) + 1)] + [samples]
    edges = sorted(set(edges))
    if len(edges) > 2 and edges[-1] - edges[-2] < minimum:
        del edges[-2]
    plan, frame = [], start_frame
    for begin, end in zip(edges, edges[1:]):
        plan.append((begin, end, frame))
        frame += framing.frame_count(framing.resampled_length(end - begin, sample_rate))
    return plan


def _mean_ms(duration: dict, count: int) -> float:
    return round(int(duration.get("ns", 0)) / 1e6 / count, 3) if count else 0.0
