"""CPU profile of audio_encoder: this version's model.onnx run by ONNX Runtime (copied into
every version `lipsync import --audio-encoder` adds)."""

from lipsync_server.backend.onnx_model import TritonPythonModel  # noqa: F401
