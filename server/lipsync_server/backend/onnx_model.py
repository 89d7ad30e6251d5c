"""Runs `<version>/model.onnx` on the CPU: the CPU stand-in for a TensorRT plan.

Used by the audio encoder and by every avatar's UNet (their model.py only imports this class).
The runtime is ONNX Runtime or OpenVINO (lipsync_server/runtimes.py): the config's `runtime` parameter names
one, or `auto` (the default) takes the one measured faster on this machine for this graph
(runtime_choice.py); `precision` is fp32 unless a subclass (the avatars) finds bf16 allowed.
The tensor names in config.pbtxt are the graph's. Requests that the dynamic batcher groups are
concatenated along the batch axis and run together; requests whose shapes cannot be concatenated
(the encoder's variable-length clips) run one by one. `frames_per_run` (0: the whole batch)
splits a run into runs of that many items: a CPU runtime's working memory grows with the batch
it runs, while its speed per item hardly does (perf/README.md), and a server holds one such
process per resident avatar version.
"""

import time
from pathlib import Path

import numpy as np
import psutil
import triton_python_backend_utils as pb_utils

from lipsync_server import runtimes

from . import deliberate_delay, metrics, runtime_choice, stub


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        folder = Path(args["model_repository"]) / args["model_version"]
        self.check_graph(config, runtimes.graph_tensors(folder / "model.onnx"), args)
        precision, why_precision = self.precision(config, folder)
        threads = int(stub.parameter(config, "threads"))
        self.frames_per_run = int(stub.parameter(config, "frames_per_run"))
        try:
            self.delay_per_item_s = deliberate_delay.seconds_per_frame(config)
        except ValueError as error:
            raise pb_utils.TritonModelException(f"{args['model_name']}: {error}") from None
        runtime = stub.parameter(config, "runtime")
        why_runtime = "the config's runtime parameter"
        # One item a run is always exactly one: the runtime may compile for that shape.
        fixed_batch = 1 if self.frames_per_run == 1 else 0
        if runtime == "auto":
            batch = self.frames_per_run or max(1, int(config.get("max_batch_size", 1)))
            # A precision the config names is kept where the runtime has it; `auto` is timed too.
            either = stub.parameter(config, "precision") == "auto"
            runtime, precision, why_runtime = runtime_choice.fastest(
                folder / "model.onnx", precision, threads, batch, fixed=bool(fixed_batch), or_fp32=either
            )
        self.session = runtimes.open_session(folder / "model.onnx", runtime, precision, threads, fixed_batch)
        name, version = args["model_name"], args["model_version"]
        pb_utils.Logger.log_info(runtimes.loaded(name, version, self.session.description, why_runtime, why_precision))
        self.metrics = metrics.Metrics(name)
        self.runtime_info = self.metrics.series(
            metrics.RUNTIME_INFO, version=version, runtime=runtime, precision=precision
        )
        self.memory = self.metrics.series(metrics.MODEL_MEMORY, version=version)
        self.process = psutil.Process()
        self._report()

    def finalize(self):
        # Triton keeps a series after its model unloads: an unloaded version runs nothing and
        # holds nothing. (A reload of the same version starts the new process before this one
        # ends: the new one reports again after its next run.)
        self.runtime_info.set(0)
        self.memory.set(0)

    def _report(self) -> None:
        """What runs this version, and this process's resident memory: the model, its runtime and
        the buffers of the largest batch run so far. After every run: two small messages to the
        server and one read of the process's statm, next to a run of milliseconds or more."""
        self.runtime_info.set(1)
        self.memory.set(self.process.memory_info().rss)

    def check_graph(self, config: dict, tensors: list[runtimes.Tensor], args: dict) -> None:
        """Raises TritonModelException if the graph is not what the model serves (subclasses)."""

    def precision(self, config: dict, folder: Path) -> tuple[str, str]:
        """(precision, why): the config's `precision` parameter, fp32 by default."""
        precision = stub.parameter(config, "precision")
        if precision not in runtimes.PRECISIONS:
            raise pb_utils.TritonModelException(f"precision {precision!r}: use one of {', '.join(runtimes.PRECISIONS)}")
        return precision, "the config's precision parameter"

    def refusal(self, arrays: list[np.ndarray]) -> str | None:
        """Why a request's inputs (in config order) are not served, or None (subclasses)."""
        return None

    def execute(self, requests):
        arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs] for r in requests]
        responses: list = [None] * len(requests)
        for i, request_arrays in enumerate(arrays):
            why = self.refusal(request_arrays)
            if why:
                responses[i] = stub.invalid_arg(why)
        served = [i for i, response in enumerate(responses) if response is None]
        arrays = [arrays[i] for i in served]
        wanted = [self._wanted(requests[i]) for i in served]
        if len(served) > 1 and _same_shapes(arrays):
            results = self._run_together(arrays, wanted)
        else:
            results = [self._run_one(request_arrays, names) for request_arrays, names in zip(arrays, wanted)]
        for i, response in zip(served, results):
            responses[i] = response
        self._report()
        return responses

    def _wanted(self, request) -> list[str]:
        asked = set(request.requested_output_names())
        return [name for name in self.outputs if name in asked] or self.outputs

    def _run_together(self, arrays, wanted):
        sizes = [request_arrays[0].shape[0] for request_arrays in arrays]
        joined = [np.concatenate(column) for column in zip(*arrays)]
        names = [name for name in self.outputs if any(name in w for w in wanted)]
        try:
            results = self._run(names, joined)
        except Exception:  # each on its own, so that a failure is only the failing request's
            return [self._run_one(request_arrays, w) for request_arrays, w in zip(arrays, wanted)]
        bounds = np.cumsum(sizes)[:-1]
        split = dict(zip(names, (np.split(result, bounds) for result in results)))
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(name, split[name][i]) for name in w])
            for i, w in enumerate(wanted)
        ]

    def _run_one(self, request_arrays, names):
        try:
            results = self._run(names, request_arrays)
        except Exception as error:
            return stub.internal(f"{self.session.description} failed: {error}")
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, r) for n, r in zip(names, results)])

    def _run(self, names: list[str], arrays: list[np.ndarray]) -> list[np.ndarray]:
        """The named outputs for these inputs, in runs of at most frames_per_run items."""
        size = len(arrays[0])
        if self.delay_per_item_s:
            time.sleep(self.delay_per_item_s * size)
        step = self.frames_per_run or size
        if step >= size:
            return self.session.run(names, dict(zip(self.inputs, arrays)))
        parts = [
            self.session.run(names, {n: a[i : i + step] for n, a in zip(self.inputs, arrays)})
            for i in range(0, size, step)
        ]
        return [np.concatenate(column) for column in zip(*parts)]


def _same_shapes(arrays) -> bool:
    first = [a.shape[1:] for a in arrays[0]]
    return all([a.shape[1:] for a in request_arrays] == first for request_arrays in arrays[1:])
