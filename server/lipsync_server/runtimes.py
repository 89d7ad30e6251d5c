"""The CPU runtimes that run a served model.onnx inside a python-backend model: ONNX Runtime and
OpenVINO (its CPU plugin, reading the same ONNX file), each at a floating-point precision.

OpenVINO runs bfloat16 only where the CPU computes it natively (AVX512-BF16 or AMX: its
OPTIMIZATION_CAPABILITIES list BF16); elsewhere bf16 would be emulated, slower than fp32. Its
default on such CPUs is bf16, so fp32 is always asked for explicitly.
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ONNXRUNTIME = "onnxruntime"
OPENVINO = "openvino"
RUNTIMES = (ONNXRUNTIME, OPENVINO)
FP32 = "fp32"
BF16 = "bf16"
PRECISIONS = (FP32, BF16)


@dataclass(frozen=True)
class Tensor:
    name: str
    dims: list[int]  # without the batch axis; -1 where the graph leaves it open


class OnnxRuntimeSession:
    """ONNX Runtime's CPU provider; computes only the outputs asked for."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.description = f"ONNX Runtime {ort.__version__} fp32"
        self.inputs = [_tensor(t.name, t.shape) for t in self.session.get_inputs()]
        self.outputs = [_tensor(t.name, t.shape) for t in self.session.get_outputs()]

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(names, feeds)


class OpenVinoSession:
    """OpenVINO's CPU plugin: one stream, `threads` threads, the given inference precision;
    compiled for batches of exactly `fixed_batch` items when given (static shapes: 13% more
    frames a second for the reference-size UNet at 1 than the same graph with an open batch)."""

    def __init__(self, path: Path, threads: int, precision: str, fixed_batch: int = 0):
        import openvino as ov

        if precision == BF16 and not has_native_bf16():
            raise ValueError("bf16 needs a CPU with native bfloat16 (AVX512-BF16 or AMX)")
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == BF16 else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        model = core().read_model(str(path))
        if fixed_batch:
            model.reshape({p.get_any_name(): [fixed_batch, *list(p.get_partial_shape())[1:]] for p in model.inputs})
        self.compiled = core().compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.description = f"OpenVINO {ov.get_version().split('-')[0]} {precision}"
        self.inputs = [_tensor(p.get_any_name(), list(p.get_partial_shape())) for p in self.compiled.inputs]
        self.outputs = [_tensor(p.get_any_name(), list(p.get_partial_shape())) for p in self.compiled.outputs]

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        results = self.request.infer(feeds)  # copies of the outputs: the request's buffers are reused
        return [results[self.compiled.output(name)] for name in names]


def open_session(
    path: Path, runtime: str, precision: str, threads: int, fixed_batch: int = 0
) -> OnnxRuntimeSession | OpenVinoSession:
    """`fixed_batch`: every run has exactly this many items (0: any number); a runtime may
    compile for that shape."""
    if runtime == ONNXRUNTIME:
        if precision != FP32:
            raise ValueError(f"ONNX Runtime runs {FP32} only on CPU, not {precision}")
        return OnnxRuntimeSession(path, threads)
    if runtime == OPENVINO:
        return OpenVinoSession(path, threads, precision, fixed_batch)
    raise ValueError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")


def loaded(model: str, version: str, description: str, why_runtime: str, why_precision: str) -> str:
    """The line a CPU model logs when it loads: what runs it, and why."""
    return f"{model} version {version}: {description} (runtime: {why_runtime}; precision: {why_precision})"


def served(metrics) -> dict[tuple[str, int], str]:
    """(model, version) -> "openvino bf16": what runs each loaded CPU model version, as a server's
    metrics say (lipsync_model_runtime_info; `metrics`: a launcher.scrape.Scrape)."""
    return {
        (s.labels["model"], int(s.labels["version"])): f"{s.labels['runtime']} {s.labels['precision']}"
        for s in metrics.matching("lipsync_model_runtime_info")
        if s.value == 1
    }


def graph_tensors(path: Path) -> list[Tensor]:
    """The graph's inputs and outputs, read without compiling it."""
    model = core().read_model(str(path))
    return [_tensor(p.get_any_name(), list(p.get_partial_shape())) for p in [*model.inputs, *model.outputs]]


@functools.cache
def core():
    import openvino as ov

    return ov.Core()


@functools.cache
def has_native_bf16() -> bool:
    """Whether OpenVINO is here and this CPU computes bfloat16 natively."""
    try:
        return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except ImportError:  # the GPU image: TensorRT serves, OpenVINO is not installed
        return False


def cpu_name() -> str:
    return str(core().get_property("CPU", "FULL_DEVICE_NAME"))


def _tensor(name: str, shape) -> Tensor:
    dims = [int(d.get_length()) if hasattr(d, "is_static") and d.is_static else d for d in shape[1:]]
    return Tensor(name, [d if isinstance(d, int) else -1 for d in dims])
