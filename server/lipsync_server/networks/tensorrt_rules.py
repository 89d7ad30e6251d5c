"""What TensorRT's ONNX parser refuses, checked on an exported graph without a GPU.

The GPU profile builds every served ONNX file into a TensorRT plan (lipsync.tensorrt_plans);
a graph the parser refuses stops that build. These rules are the parser's own (onnx-tensorrt,
TensorRT 10 as in the NGC image), read from its sources:
- uint8 only on the network's inputs and outputs: a node whose uint8 output is not a graph output
  is refused ("TensorRT does not support UINT8 types for intermediate tensors");
- QuantizeLinear/DequantizeLinear: symmetric only (every zero point 0: "TensorRT only supports
  symmetric quantization"), and DequantizeLinear takes 8-bit integers or FP8/INT4, not int32
  (ONNX Runtime's quantized biases);
- tensors only of the element types a TensorRT network has (nvinfer1::DataType);
- output dimensions that follow from the input shapes: TensorRT sizes every tensor from shapes
  (and declared shape tensors, which the served graphs do not use), so a dimension computed from
  an input's values (a slice up to a count read from a tensor, NonZero) is refused or unbounded.
  ONNX Runtime's symbolic shape inference names each such dimension with a symbol of its own.
"""

import copy
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

NETWORK_TYPES = {
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.INT8,
    TensorProto.INT32,
    TensorProto.INT64,
    TensorProto.BOOL,
    TensorProto.UINT8,
    TensorProto.FLOAT8E4M3FN,
    TensorProto.INT4,
}
# Functions in the dimension expressions that symbolic shape inference writes.
FUNCTIONS = {"floor", "ceiling", "Max", "Min", "Mod", "FloorMod"}
DEQUANTIZABLE = {TensorProto.INT8, TensorProto.FLOAT8E4M3FN, TensorProto.INT4}


class TensorRTRuleError(ValueError):
    """A graph that the GPU profile could not build."""


def check(path: Path) -> None:
    """Raises TensorRTRuleError naming what TensorRT's parser would refuse in the ONNX file."""
    found = problems(onnx.load(str(path)))
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise TensorRTRuleError(f"{path} would not build into a TensorRT plan: {'; '.join(found[:3])}{more}")


def problems(model: onnx.ModelProto) -> list[str]:
    """Every reason TensorRT's parser would refuse this graph (empty: it parses)."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    constants = {init.name: init for init in graph.initializer}
    types.update({name: init.data_type for name, init in constants.items()})
    outputs = {output.name for output in graph.output}
    found = [
        f"input {v.name}: {_type(types[v.name])} is no TensorRT type"
        for v in graph.input
        if types[v.name] not in NETWORK_TYPES
    ]
    for node in graph.node:
        where = f"{node.op_type} node {node.name or '?'}"
        for name in node.output:
            kind = types.get(name, TensorProto.UNDEFINED)
            if kind == TensorProto.UINT8 and name not in outputs and node.op_type != "Constant":
                found.append(f"{where}: uint8 intermediate tensor {name!r} (uint8 only on graph inputs and outputs)")
            elif kind not in NETWORK_TYPES | {TensorProto.UNDEFINED}:
                found.append(f"{where}: output {name!r} is {_type(kind)}, no TensorRT type")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if zero_point is not None and np.any(numpy_helper.to_array(zero_point) != 0):
                found.append(f"{where}: asymmetric quantization (zero point not 0)")
            if node.op_type == "DequantizeLinear" and types.get(node.input[0]) not in DEQUANTIZABLE:
                found.append(f"{where}: dequantizes {_type(types.get(node.input[0], 0))} (int8, fp8 or int4 only)")
    return found + data_dependent_dimensions(model)


def data_dependent_dimensions(model: onnx.ModelProto) -> list[str]:
    """Output dimensions not computed from the input dimensions' symbols alone."""
    inputs = {dim.dim_param for v in model.graph.input for dim in v.type.tensor_type.shape.dim if dim.dim_param}
    unknown = copy.deepcopy(model)
    for output in unknown.graph.output:  # inferred afresh, not taken from what the export declared
        output.type.tensor_type.ClearField("shape")
    try:
        inferred = SymbolicShapeInference.infer_shapes(unknown, auto_merge=True)
    except Exception as error:  # the tool raises bare Exceptions on graphs it cannot follow
        return [f"output shapes cannot be inferred from input shapes: {str(error)[:120]}"]
    found = []
    for output in inferred.graph.output:
        for axis, dim in enumerate(output.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                continue
            symbols = set(re.findall(r"[A-Za-z_]\w*", dim.dim_param)) - FUNCTIONS
            if not dim.dim_param or not symbols <= inputs:
                found.append(
                    f"output {output.name}: dimension {axis} ({dim.dim_param or '?'}) depends on input values, "
                    f"not only on the input shapes ({', '.join(sorted(inputs)) or 'none'})"
                )
    return found


def _type(element_type: int) -> str:
    return TensorProto.DataType.Name(element_type)
