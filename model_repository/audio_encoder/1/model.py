"""CPU profile of audio_encoder: 1/model.onnx run by ONNX Runtime."""

from lipsync.serving.onnx_model import TritonPythonModel  # noqa: F401
