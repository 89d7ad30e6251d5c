"""What the pipeline decides, as Prometheus metrics on Triton's own metrics port (the python
backend's custom metrics API): requests refused and why, the expected wait the admission
publishes, avatar loads and evictions, resident avatars, and each CPU model's runtime and memory.

Names and labels follow Prometheus's conventions: base units (seconds, bytes), `_total` on
counters, `_info` on a gauge that is 1 and carries its facts in labels. Every series has a
`model` label naming the Triton model that reports it, so that two models may report into one
family (the families are the server's, shared by all its model processes) without their series
mixing. Counters survive a model's reload (Triton keeps a series by its labels), and every label
value a counter can take is created at 0 when its model loads, so that rate() and alerts see a
series from the start rather than none.

Importable only inside a Triton stub. docs/operations.md's "Metrics" section lists them all.
"""

from typing import Any

import triton_python_backend_utils as pb_utils

REFUSED = "lipsync_requests_refused_total"
EXPECTED_WAIT = "lipsync_expected_wait_seconds"
FRAMES_IN_FLIGHT = "lipsync_frames_in_flight"
AVATAR_LOADS = "lipsync_avatar_loads_total"
AVATAR_LOAD_DURATION = "lipsync_avatar_load_duration_seconds"
AVATAR_EVICTIONS = "lipsync_avatar_evictions_total"
AVATARS_RESIDENT = "lipsync_avatars_resident"
RUNTIME_INFO = "lipsync_model_runtime_info"
MODEL_MEMORY = "lipsync_model_memory_bytes"

# Why a request was refused: the expected wait over what the request accepts, or the frames in
# flight at their limit (busy: the reason to scale out); its avatar still loading, or its load
# failed for a passing reason (avatar_loading, avatar_unavailable); its input (bad_input).
BUSY, AVATAR_LOADING, AVATAR_UNAVAILABLE, BAD_INPUT = "busy", "avatar_loading", "avatar_unavailable", "bad_input"
REASONS = (BUSY, AVATAR_LOADING, AVATAR_UNAVAILABLE, BAD_INPUT)
LOADED, FAILED = "loaded", "failed"
# An avatar's load: a python-backend model starting (about a second) up to a TensorRT plan built
# on demand (a minute).
LOAD_BUCKETS_S = [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]

# name -> (kind, description); pb_utils.MetricFamily exists only once the stub has started.
FAMILIES = {
    REFUSED: ("COUNTER", "Requests refused, by reason (busy: over the expected wait or the frame limit)"),
    EXPECTED_WAIT: ("GAUGE", "Seconds until the frames in the works are made, as admission expects"),
    FRAMES_IN_FLIGHT: ("GAUGE", "Frames admitted and not yet made"),
    AVATAR_LOADS: ("COUNTER", "Avatar loads on demand, by result"),
    AVATAR_LOAD_DURATION: ("HISTOGRAM", "Seconds an avatar's load on demand took"),
    AVATAR_EVICTIONS: ("COUNTER", "Avatars unloaded to make room (least recently used)"),
    AVATARS_RESIDENT: ("GAUGE", "Avatars loaded and able to serve"),
    RUNTIME_INFO: ("GAUGE", "1 for the runtime and precision a CPU model version runs"),
    MODEL_MEMORY: ("GAUGE", "Resident memory of a CPU model version's process, in bytes"),
}


class Metrics:
    """One model's series. Families and series are kept here: the python backend deletes a
    family whose Python object is collected, and its series with it."""

    def __init__(self, model: str):
        self.model = model
        self._families: dict[str, Any] = {}
        self._series: dict[tuple, Any] = {}

    def series(self, name: str, **labels: str):
        key = (name, *sorted(labels.items()))
        if key not in self._series:
            if name not in self._families:
                kind, description = FAMILIES[name]
                kind_value = getattr(pb_utils.MetricFamily, kind)
                self._families[name] = pb_utils.MetricFamily(name=name, description=description, kind=kind_value)
            buckets = LOAD_BUCKETS_S if name == AVATAR_LOAD_DURATION else None
            self._series[key] = self._families[name].Metric(labels={"model": self.model, **labels}, buckets=buckets)
        return self._series[key]

    def refusals(self) -> None:
        """Every reason's counter, at 0 until a refusal."""
        for reason in REASONS:
            self.series(REFUSED, reason=reason)

    def refused(self, reason: str) -> None:
        self.series(REFUSED, reason=reason).increment(1)


class ResidencyMetrics:
    """residency.Events as metrics."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        for result in (LOADED, FAILED):
            metrics.series(AVATAR_LOADS, result=result)
        metrics.series(AVATAR_EVICTIONS)
        metrics.series(AVATAR_LOAD_DURATION)

    def loaded(self, seconds: float) -> None:
        self.metrics.series(AVATAR_LOADS, result=LOADED).increment(1)
        self.metrics.series(AVATAR_LOAD_DURATION).observe(seconds)

    def load_failed(self) -> None:
        self.metrics.series(AVATAR_LOADS, result=FAILED).increment(1)

    def evicted(self) -> None:
        self.metrics.series(AVATAR_EVICTIONS).increment(1)

    def resident(self, count: int) -> None:
        self.metrics.series(AVATARS_RESIDENT).set(count)
