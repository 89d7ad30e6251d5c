"""The audio encoder in the CPU profile: the version's model.onnx on the CPU (onnx_model.py),
taking what the GPU profile's TensorRT plan takes: at most the mel frames of the longest audio
the server accepts, from a stream offset >= 0. The plan's shapes refuse longer input there; here
this check does, so that a direct call cannot spend more than a request through the pipeline."""

from pathlib import Path

from lipsync_protocol import framing
from lipsync_server import model_configs

from . import onnx_model


class TritonPythonModel(onnx_model.TritonPythonModel):
    def initialize(self, args):
        repository = Path(args["model_repository"]).parent
        seconds = model_configs.max_audio_seconds(repository)
        self.max_mel_frames = framing.mel_frame_count(round(seconds * framing.SAMPLE_RATE))
        super().initialize(args)

    def refusal(self, arrays):
        mel, starts = arrays
        frames, windows = mel.shape[1], starts.shape[1]
        if frames < framing.MIN_MEL_FRAMES:
            return f"MEL: {frames} frames is fewer than the {framing.MIN_MEL_FRAMES} of one audio window"
        if frames > self.max_mel_frames:
            return f"MEL: {frames} frames is more than the {self.max_mel_frames} of this server's longest audio"
        most = framing.window_count(frames) + 1  # a segment's count follows its stream's rounding
        if not 1 <= windows <= most:
            return f"WINDOW_STARTS: {windows} windows for {frames} mel frames (1 to {most})"
        return None
