"""Triton model configs (config.pbtxt, configs/<profile>.pbtxt) read and changed through Triton's
model-config protobuf (tritonclient's model_config_pb2): setting a parameter the config does not
have fails, where a string replacement that no longer matched would pass silently. Benchmarks and
tests change copies of the repository's configs with it (a copy loses the comments)."""

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

VALIDATOR = "request_validator"  # the ensemble's first step: its config bounds the audio


def read(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(Path(path).read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def parameter(path: Path, key: str) -> str:
    config = read(path)
    if key not in config.parameters:
        raise KeyError(f"{path}: no parameter {key!r}")
    return config.parameters[key].string_value


def set_parameters(path: Path, new: bool = False, **values: str) -> None:
    """Sets existing `parameters` of the config at `path` (`new`: parameters it does not have
    yet), written as a new file: the old one may be a hard link shared with other avatars."""
    path = Path(path)
    config = read(path)
    wrong = sorted(set(values) & set(config.parameters)) if new else sorted(set(values) - set(config.parameters))
    if wrong:
        raise KeyError(f"{path}: {'already has' if new else 'no'} parameter {', '.join(wrong)}")
    for key, value in values.items():
        config.parameters[key].string_value = value
    path.unlink()
    path.write_text(text_format.MessageToString(config), encoding="utf-8")


def max_audio_seconds(repository: Path) -> float:
    """The longest audio the server takes: request_validator's max_audio_seconds. The steps
    behind it are sized by it too (the encoder's TensorRT shapes, the CPU steps' own checks)."""
    return float(parameter(repository / VALIDATOR / "config.pbtxt", "max_audio_seconds"))
