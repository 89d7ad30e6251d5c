"""Which CPU runtime, and precision, runs a graph faster on this machine: measured at the first
load, then remembered.

CPUs differ between machines (AVX2 only, AVX-512 with VNNI, BF16, AMX) and so does the faster
runtime: OpenVINO is well ahead on some graphs and CPUs, level with ONNX Runtime on others. So
the first load of a graph times both on one full batch and writes the winner to a cache file,
keyed by everything the result depends on: the CPU and its ISA, both runtimes' versions, the
graph's structure (not its weights: every avatar of one network width shares the result), the
precision, the batch and the threads. Later loads, of this or any same-shaped avatar, read it.

    $LIPSYNC_CACHE_DIR/cpu-runtimes.json, or ${XDG_CACHE_HOME:-~/.cache}/lipsync/cpu-runtimes.json
"""

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from lipsync_server import runtimes

from ..audio import encoder_inputs
from ..cache import cache_dir

TIMED_RUNS = 3
# Inputs with an open length (the encoder's MEL) are timed at 2 s of audio.
OPEN_LENGTH = 200


def cache_file() -> Path:
    return cache_dir() / "cpu-runtimes.json"


def fastest(
    path: Path, precision: str, threads: int, batch: int, fixed: bool = False, or_fp32: bool = False
) -> tuple[str, str, str]:
    """(runtime, precision, how it was chosen). ONNX Runtime runs fp32 only: asked for bf16, this
    times OpenVINO's bf16 against ONNX Runtime's fp32, and where ONNX Runtime wins the precision
    is fp32. `or_fp32`: bf16 is allowed, not asked for (the avatars' `precision: auto`), and it is
    not always the faster: OpenVINO's fp32 is timed too. `fixed`: every run has exactly `batch`
    items, as served (runtimes.open_session's fixed_batch)."""
    or_fp32 = or_fp32 and precision != runtimes.FP32
    key = _key(path, f"{precision} or fp32" if or_fp32 else precision, threads, batch, fixed)
    choices = candidates(precision, or_fp32)
    known = _read().get(key)
    if known not in choices:
        # Triton loads models in parallel: one measurement at a time, or each would time the others.
        with _measuring():
            known = _read().get(key)  # measured by another model while this one waited
            if known not in choices:
                fixed_batch = batch if fixed else 0
                sessions = {
                    name: runtimes.open_session(path, runtime, chosen, threads, fixed_batch)
                    for name, (runtime, chosen) in choices.items()
                }
                timings = _time(sessions, batch)
                winner = min(timings, key=timings.__getitem__)
                _write(key, winner)
                measured = ", ".join(f"{name} {s * 1000:.0f} ms" for name, s in timings.items())
                return *choices[winner], f"measured now: one batch of {batch}: {measured}"
    return *choices[known], f"measured before on this machine ({cache_file()})"


def candidates(precision: str, or_fp32: bool = False) -> dict[str, tuple[str, str]]:
    """What is timed for `precision`, by name: (runtime, precision) pairs."""
    pairs = [(runtimes.ONNXRUNTIME, runtimes.FP32), (runtimes.OPENVINO, precision)]
    if or_fp32 and precision != runtimes.FP32:
        pairs.append((runtimes.OPENVINO, runtimes.FP32))
    return {f"{runtime} {chosen}": (runtime, chosen) for runtime, chosen in pairs}


@contextlib.contextmanager
def _measuring():
    path = cache_file().with_suffix(".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path, "a")
    except OSError:  # a read-only home: measure unserialized
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _time(sessions: dict, batch: int) -> dict[str, float]:
    """The best of TIMED_RUNS runs of one batch per session, taken in turns so that a moment of
    load elsewhere on the machine does not fall on one runtime only."""
    rng = np.random.default_rng(0)
    feeds = {name: {t.name: _inputs(t, batch, rng) for t in s.inputs} for name, s in sessions.items()}
    best = dict.fromkeys(sessions, float("inf"))
    for name, session in sessions.items():
        session.run([t.name for t in session.outputs], feeds[name])  # allocates and compiles for the shape
    for _ in range(TIMED_RUNS):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run([t.name for t in session.outputs], feeds[name])
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def _inputs(tensor: runtimes.Tensor, batch: int, rng: np.random.Generator) -> np.ndarray:
    """Inputs in the served ranges: uint8 faces, small non-negative features, offset 0."""
    shape = [batch, *(OPEN_LENGTH if d < 0 else d for d in tensor.dims)]
    if tensor.name == "FACE":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if tensor.name == "WINDOW_STARTS":
        return encoder_inputs.window_starts(OPEN_LENGTH).repeat(batch, axis=0)
    return rng.uniform(0, 3, shape).astype(np.float32)


def _key(path: Path, precision: str, threads: int, batch: int, fixed: bool) -> str:
    import onnxruntime as ort
    import openvino as ov

    isa = _cpu_flags()
    parts = [runtimes.cpu_name(), isa, f"ort {ort.__version__}", f"ov {ov.get_version()}"]
    parts += [_structure(path), precision, f"{'fixed ' if fixed else ''}batch {batch}", f"threads {threads}"]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def _structure(path: Path) -> str:
    """A digest of the graph's operations and their shapes, not of its weights."""
    model = runtimes.core().read_model(str(path))
    ops = [
        f"{op.get_type_name()}{[str(o.get_partial_shape()) for o in op.outputs()]}" for op in model.get_ordered_ops()
    ]
    return hashlib.sha256("\n".join(ops).encode()).hexdigest()


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return hashlib.sha256(line.encode()).hexdigest()[:16]
    except OSError:
        pass
    return "unknown"


def _read() -> dict[str, str]:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _write(key: str, runtime: str) -> None:
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f"{path.name}.{os.getpid()}")
        staging.write_text(json.dumps({**_read(), key: runtime}, indent=1))
        staging.replace(path)  # concurrent loads each write a whole file: the last one wins
    except OSError:
        pass  # a read-only home: measure again at the next load
