"""Export the serving graphs to ONNX with dynamic batch / length axes."""

from pathlib import Path

import torch

from lipsync_protocol import framing

from . import tensorrt_rules
from .audio_encoder import AudioEncoder
from .exported import FACE, ServingAudioEncoder, ServingUNet
from .unet import LipSyncUNet

OPSET = 17


def export_audio_encoder(encoder: AudioEncoder, path: Path) -> None:
    graph = ServingAudioEncoder(encoder).eval()
    mel = torch.zeros(1, 641, 80)
    starts = torch.tensor([framing.window_starts(mel.shape[1])], dtype=torch.int64)
    axes = {"MEL": {1: "mel_frames"}, "WINDOW_STARTS": {1: "windows"}, "AUDIO_FEATURES": {1: "frames"}}
    _export(graph, (mel, starts), path, ["MEL", "WINDOW_STARTS"], ["AUDIO_FEATURES"], axes)


def export_unet(unet: LipSyncUNet, path: Path) -> None:
    graph = ServingUNet(unet).eval()
    face = torch.zeros(2, FACE, FACE, 3, dtype=torch.uint8)
    audio = torch.zeros(2, 32, 16, 16)
    outputs = ["FACE_RAW", "FACE_RGB"]
    axes = {name: {0: "batch"} for name in ["FACE", "AUDIO_FEATURES", *outputs]}
    _export(graph, (face, audio), path, ["FACE", "AUDIO_FEATURES"], outputs, axes)


def _export(graph, args, path: Path, inputs, outputs, axes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with torch.no_grad():
        torch.onnx.export(
            graph,
            args,
            str(tmp),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    try:
        tensorrt_rules.check(tmp)  # the same file becomes the GPU profile's TensorRT plan
    except tensorrt_rules.TensorRTRuleError:
        tmp.unlink()
        raise
    tmp.replace(path)  # never leave a half-written model where the server looks
