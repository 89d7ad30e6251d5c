"""The GPU profile's graphs as TensorRT's ONNX parser reads them, checked without a GPU: every graph
the project serves passes lipsync.networks.tensorrt_rules, and the rules catch what the parser refuses."""

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from lipsync_server.networks import checkpoints, tensorrt_rules
from lipsync_server.networks.export import export_audio_encoder, export_unet
from lipsync_server.networks.unet import LipSyncUNet

ROOT = Path(__file__).resolve().parents[1]


def graph(nodes, inputs, outputs, initializers=()) -> onnx.ModelProto:
    return helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs, list(initializers)), opset_imports=[helper.make_opsetid("", 17)]
    )


def tensor(name: str, kind: int, shape=(2, 3)):
    return helper.make_tensor_value_info(name, kind, list(shape))


def test_the_served_graphs_parse(tmp_path):
    export_unet(LipSyncUNet(base_channels=4).eval(), tmp_path / "unet.onnx")
    export_audio_encoder(
        checkpoints.load_audio_encoder(ROOT / "checkpoints" / "audio_visual_encoder.pth"), tmp_path / "encoder.onnx"
    )
    for path in (tmp_path / "unet.onnx", tmp_path / "encoder.onnx"):
        assert tensorrt_rules.problems(onnx.load(str(path))) == [], path.name


def test_uint8_between_nodes_is_refused():
    nodes = [
        helper.make_node("Transpose", ["FACE"], ["t"], perm=[1, 0]),
        helper.make_node("Cast", ["t"], ["OUT"], to=TensorProto.FLOAT),
    ]
    found = tensorrt_rules.problems(
        graph(nodes, [tensor("FACE", TensorProto.UINT8)], [tensor("OUT", TensorProto.FLOAT, (3, 2))])
    )
    assert found == ["Transpose node ?: uint8 intermediate tensor 't' (uint8 only on graph inputs and outputs)"]
    cast_first = [
        helper.make_node("Cast", ["FACE"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["t"], perm=[1, 0]),
        helper.make_node("Cast", ["t"], ["OUT"], to=TensorProto.UINT8),
    ]
    assert (
        tensorrt_rules.problems(
            graph(cast_first, [tensor("FACE", TensorProto.UINT8)], [tensor("OUT", TensorProto.UINT8, (3, 2))])
        )
        == []
    )


@pytest.mark.parametrize(
    "zero_point, quantized_type, expected",
    [
        (0, TensorProto.INT8, []),
        (3, TensorProto.INT8, ["asymmetric quantization"]),
        (0, TensorProto.INT32, ["dequantizes INT32"]),
    ],
)
def test_quantization_must_be_symmetric_int8(zero_point, quantized_type, expected):
    dtype = {TensorProto.INT8: np.int8, TensorProto.INT32: np.int32}[quantized_type]
    initializers = [
        numpy_helper.from_array(np.ones((2, 3), dtype), "q"),
        numpy_helper.from_array(np.float32(0.1), "scale"),
        numpy_helper.from_array(dtype(zero_point), "zero"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["w"]),
        helper.make_node("Add", ["X", "w"], ["Y"]),
    ]
    found = tensorrt_rules.problems(
        graph(nodes, [tensor("X", TensorProto.FLOAT)], [tensor("Y", TensorProto.FLOAT)], initializers)
    )
    assert [message.split(": ", 1)[1].split(" (")[0] for message in found] == expected


def test_types_outside_tensorrt_are_refused():
    nodes = [helper.make_node("Cast", ["X"], ["Y"], to=TensorProto.DOUBLE)]
    found = tensorrt_rules.problems(graph(nodes, [tensor("X", TensorProto.FLOAT)], [tensor("Y", TensorProto.DOUBLE)]))
    assert found == ["Cast node ?: output 'Y' is DOUBLE, no TensorRT type"]


def test_export_refuses_a_graph_tensorrt_would_refuse(tmp_path, monkeypatch):
    from lipsync_server.networks import exported

    def uint8_flip(self, face, audio):  # the layout of the first export: uint8 moved before any cast
        real = face.permute(0, 3, 1, 2).flip(1).to(torch.float32) / 255.0
        raw = self.unet(torch.cat([real, real * self.mask], dim=1), audio)
        return raw, (raw * 255).to(torch.uint8).permute(0, 2, 3, 1)

    monkeypatch.setattr(exported.ServingUNet, "forward", uint8_flip)
    with pytest.raises(tensorrt_rules.TensorRTRuleError, match="uint8 intermediate tensor"):
        export_unet(LipSyncUNet(base_channels=4).eval(), tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []  # nothing half-made left where the server looks


def test_an_output_sized_by_an_input_value_is_refused():
    # NonZero's length depends on the values of X: TensorRT cannot size Y from shapes.
    nodes = [helper.make_node("NonZero", ["X"], ["Y"])]
    found = tensorrt_rules.problems(
        graph(nodes, [tensor("X", TensorProto.FLOAT, ("rows", 3))], [tensor("Y", TensorProto.INT64, (2, "n"))])
    )
    (problem,) = found
    assert problem.startswith("output Y: dimension 1 (NonZero")
    assert problem.endswith("depends on input values, not only on the input shapes (rows)")


def test_export_refuses_an_encoder_whose_window_count_is_read_from_a_value(tmp_path, monkeypatch):
    from lipsync_protocol import framing
    from lipsync_server.networks import exported

    def count_from_a_value(self, mel, window_starts):  # the first export's form: a slice up to a value
        rows = torch.arange(framing.MAX_MEL_FRAMES)[: window_starts[0, -1] + framing.WINDOW]
        return mel[0][rows].reshape(1, -1, 80)

    monkeypatch.setattr(exported.ServingAudioEncoder, "forward", count_from_a_value)
    encoder = checkpoints.load_audio_encoder(ROOT / "checkpoints" / "audio_visual_encoder.pth")
    with pytest.raises(
        tensorrt_rules.TensorRTRuleError, match="AUDIO_FEATURES: dimension 1 .* depends on input values"
    ):
        export_audio_encoder(encoder, tmp_path / "model.onnx")
    assert list(tmp_path.iterdir()) == []
