"""Runs `<version>/model.onnx` with ONNX Runtime: the CPU stand-in for a TensorRT plan.

Used by the audio encoder and by every avatar's UNet (their model.py only imports this class).
The tensor names in config.pbtxt are the ONNX graph's. Requests that the dynamic batcher
groups are concatenated along the batch axis and run once; requests whose shapes cannot be
concatenated (the encoder's variable-length clips) run one by one. Only the outputs that the
requests ask for are computed (ONNX Runtime prunes the graph to them).
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from . import stub


class TritonPythonModel:
    def initialize(self, args):
        config = stub.model_config(args)
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(stub.parameter(config, "intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs] for r in requests]
        wanted = [self._wanted(r) for r in requests]
        if len(requests) > 1 and _same_shapes(arrays):
            return self._run_together(arrays, wanted)
        return [self._run_one(request_arrays, names) for request_arrays, names in zip(arrays, wanted)]

    def _wanted(self, request) -> list[str]:
        asked = set(request.requested_output_names())
        return [name for name in self.outputs if name in asked] or self.outputs

    def _run_together(self, arrays, wanted):
        sizes = [request_arrays[0].shape[0] for request_arrays in arrays]
        joined = [np.concatenate(column) for column in zip(*arrays)]
        names = [name for name in self.outputs if any(name in w for w in wanted)]
        try:
            results = self.session.run(names, dict(zip(self.inputs, joined)))
        except Exception as error:  # one failed run fails the requests that shared it
            return [stub.internal(f"ONNX Runtime failed: {error}")] * len(arrays)
        bounds = np.cumsum(sizes)[:-1]
        split = dict(zip(names, (np.split(result, bounds) for result in results)))
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(name, split[name][i]) for name in w])
            for i, w in enumerate(wanted)
        ]

    def _run_one(self, request_arrays, names):
        try:
            results = self.session.run(names, dict(zip(self.inputs, request_arrays)))
        except Exception as error:
            return stub.internal(f"ONNX Runtime failed: {error}")
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, r) for n, r in zip(names, results)])


def _same_shapes(arrays) -> bool:
    first = [a.shape[1:] for a in arrays[0]]
    return all([a.shape[1:] for a in request_arrays] == first for request_arrays in arrays[1:])
