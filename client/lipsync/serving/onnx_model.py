"""Runs `<version>/model.onnx` with ONNX Runtime: the CPU stand-in for a TensorRT plan.

Used by the audio encoder and by every avatar's UNet (their model.py only imports this class).
The tensor names in config.pbtxt are the ONNX graph's. Requests that the dynamic batcher
groups are concatenated along the batch axis and run once; requests whose shapes cannot be
concatenated (the encoder's variable-length clips) run one by one.
"""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from . import triton


class TritonPythonModel:
    def initialize(self, args):
        config = triton.model_config(args)
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(triton.parameter(config, "intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs] for r in requests]
        if len(requests) > 1 and _same_shapes(arrays):
            return self._run_together(arrays)
        return [self._run_one(request_arrays) for request_arrays in arrays]

    def _run_together(self, arrays):
        sizes = [request_arrays[0].shape[0] for request_arrays in arrays]
        joined = [np.concatenate(column) for column in zip(*arrays)]
        try:
            results = self.session.run(self.outputs, dict(zip(self.inputs, joined)))
        except Exception as error:  # one failed run fails the requests that shared it
            return [triton.internal(f"ONNX Runtime failed: {error}")] * len(arrays)
        bounds = np.cumsum(sizes)[:-1]
        split = [np.split(result, bounds) for result in results]
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor(name, parts[i]) for name, parts in zip(self.outputs, split)])
            for i in range(len(arrays))
        ]

    def _run_one(self, request_arrays):
        try:
            results = self.session.run(self.outputs, dict(zip(self.inputs, request_arrays)))
        except Exception as error:
            return triton.internal(f"ONNX Runtime failed: {error}")
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, r) for n, r in zip(self.outputs, results)])


def _same_shapes(arrays) -> bool:
    first = [a.shape[1:] for a in arrays[0]]
    return all([a.shape[1:] for a in request_arrays] == first for request_arrays in arrays[1:])
