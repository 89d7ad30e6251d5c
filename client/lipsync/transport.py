"""How a client reaches a server: tritonclient over gRPC or HTTP with the keys' headers, one
inference call that cancel() can stop, and the wait while the server loads an avatar on demand."""

import threading
import time
from collections.abc import Iterable

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from lipsync_protocol import keys, messages


class Cancelled(RuntimeError):
    """The request was not made, or not finished, because LipsyncClient.cancel() was called."""


class Transport:
    def __init__(
        self,
        url: str,
        protocol: str,
        headers: dict[str, str] | None,
        timeout_s: float | None,
        admin_key: str | None,
        inference_key: str | None,
    ):
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', not {protocol!r}")
        self.url, self.protocol, self.timeout_s = url, protocol, timeout_s
        self.headers = dict(headers or {}) | keys.INFERENCE.headers(
            keys.INFERENCE.for_client(url, inference_key), protocol
        )
        self.admin_headers = self.headers | keys.ADMIN.headers(keys.ADMIN.for_client(url, admin_key), protocol)
        self.module = grpcclient if protocol == "grpc" else httpclient
        self.cancelled = threading.Event()
        self.lock = threading.Lock()
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

    def as_json(self) -> dict:
        return {"as_json": True} if self.protocol == "grpc" else {}

    def infer(
        self, model: str, outputs: Iterable[str], tensors: list[tuple[str, np.ndarray, str]], cold_start_wait_s: float
    ) -> dict[str, np.ndarray]:
        """One inference, sent again while the server loads the avatar on demand and says when
        to retry, for at most `cold_start_wait_s`."""
        outputs = list(outputs)
        deadline = time.monotonic() + cold_start_wait_s
        while True:
            if self.cancelled.is_set():
                raise Cancelled("the client was cancelled")
            try:
                wanted = [self.module.InferRequestedOutput(o) for o in outputs]
                answer = self._send(model, infer_inputs(self.module, tensors), wanted)
                return {name: answer.as_numpy(name) for name in outputs}
            except InferenceServerException as error:
                wait = messages.retry_after(error.message() or "")
                if wait is None or time.monotonic() + wait > deadline:
                    raise
                self.cancelled.wait(wait)

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
        with self.lock:
            self._calls.add(call)
        if self.cancelled.is_set():
            call.cancel()
        done.wait()
        with self.lock:
            self._calls.discard(call)
        if answer["error"] is not None:
            raise Cancelled("the client was cancelled") if self.cancelled.is_set() else answer["error"]
        return answer["result"]

    def cancel(self) -> None:
        self.cancelled.set()
        with self.lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()

    def sleep_unless_cancelled(self, seconds: float) -> None:
        if self.cancelled.wait(seconds):
            raise Cancelled("the client was cancelled")

    def close(self) -> None:
        if self._grpc is not None:
            self._grpc.close()


def infer_inputs(module, tensors: Iterable[tuple[str, np.ndarray, str]]) -> list:
    """tritonclient inputs (`module`: tritonclient.grpc or tritonclient.http) from (name, array,
    Triton type) triples."""
    inputs = []
    for name, value, dtype in tensors:
        tensor = module.InferInput(name, list(value.shape), dtype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs
