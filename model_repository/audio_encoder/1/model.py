"""CPU profile of audio_encoder: this version's model.onnx run on the CPU (copied into
every version `lipsync-server import --audio-encoder` adds)."""

from lipsync_server.backend.audio_encoder_model import TritonPythonModel  # noqa: F401
