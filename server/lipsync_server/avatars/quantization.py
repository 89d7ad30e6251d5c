"""INT8 versions of an avatar's UNet: static quantization calibrated on the avatar's own crops.

ONNX Runtime's quantizer writes a QDQ graph (QuantizeLinear/DequantizeLinear around each
convolution, per-channel weight scales), which ONNX Runtime runs with integer kernels and
TensorRT builds as an explicitly quantized INT8 engine. Calibration and the quality check use
the avatar's face crops with audio features of the project's synthetic speech, on different
frames and different speech, so the reported PSNR is not measured on the calibration data.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from lipsync import avatar_names, framing
from lipsync_server.audio import mel_pipeline
from lipsync_server.demo import synthetic
from lipsync_server.networks import tensorrt_rules

from . import media, repository

MIN_PSNR_DB = 35.0
QUALITY_FILE = "quality.json"
CALIBRATION_FRAMES = 8  # ORT keeps every activation of every calibration frame: about 0.35 GB each
EVALUATION_FRAMES = 16
BATCH = 8


class QualityError(ValueError):
    """The quantized network's output is too far from the float network's."""


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images (or stacks of them), in dB."""
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def audio_features(encoder_onnx: Path, audio: np.ndarray) -> np.ndarray:
    """Per-frame encoder windows [F, 32, 16, 16] of 16 kHz audio, as the server computes them."""
    mel = mel_pipeline.mel_of(audio)
    session = ort.InferenceSession(str(encoder_onnx), providers=["CPUExecutionProvider"])
    return session.run(["AUDIO_FEATURES"], {"MEL": mel[None], "MEL_OFFSET": np.zeros((1, 1), np.int64)})[0][0]


def quantize_version(
    model_repository: Path, name: str, source_version: int | None = None, min_psnr_db: float = MIN_PSNR_DB
) -> tuple[int, float]:
    """Adds an INT8 copy of the avatar's `source_version` (default: latest) as its next
    version, with quality.json beside it; returns (version, PSNR in dB). Raises QualityError,
    writing nothing, when the PSNR against the float version is below `min_psnr_db`."""
    model_repository = Path(model_repository)
    folder = model_repository / avatar_names.model_name(name)
    versions = repository.versions(model_repository, name)
    if not versions:
        raise ValueError(f"avatar {name!r} has no weight versions in {model_repository}")
    source_version = source_version or versions[-1]
    source = folder / str(source_version) / "model.onnx"
    if not source.is_file():
        raise ValueError(f"avatar {name!r} has no version {source_version} ({source} is missing)")
    faces = np.load(media.media_dir(model_repository, name) / "faces.npy", mmap_mode="r")
    encoder = repository.latest_encoder(model_repository)
    with tempfile.TemporaryDirectory() as scratch:
        quantized = Path(scratch) / "model.onnx"
        quality = quantize_model(source, quantized, faces, encoder)
        tensorrt_rules.check(quantized)  # the GPU profile builds every version into a plan
        if quality < min_psnr_db:
            raise QualityError(
                f"INT8 copy of avatar {name!r} version {source_version} reaches {quality:.1f} dB PSNR "
                f"against it, below the required {min_psnr_db:.1f} dB: not added"
            )
        target = folder / str(versions[-1] + 1)
        target.mkdir()
        shutil.copyfile(quantized, target / "model.onnx")
    (target / "model.py").write_text(repository.AVATAR_MODEL_PY)
    (target / QUALITY_FILE).write_text(
        json.dumps(
            {
                "precision": "int8",
                "source_version": source_version,
                "psnr_db": round(quality, 2),
                "evaluation_frames": EVALUATION_FRAMES,
                "calibration_frames": CALIBRATION_FRAMES,
            },
            indent=2,
        )
    )
    return int(target.name), quality


def quantize_model(source: Path, target: Path, faces: np.ndarray, encoder_onnx: Path) -> float:
    """Writes the INT8 QDQ copy of UNet graph `source` to `target`, calibrated on `faces` (the
    avatar's crops); returns its output's PSNR in dB against the float graph's."""
    calibration = _inputs(
        faces,
        audio_features(encoder_onnx, synthetic.speech(2.0, framing.SAMPLE_RATE, seed=11)),
        CALIBRATION_FRAMES,
        offset=0,
    )
    evaluation = _inputs(
        faces,
        audio_features(encoder_onnx, synthetic.speech(1.0, framing.SAMPLE_RATE, seed=12)),
        EVALUATION_FRAMES,
        offset=len(faces) // 2,
    )
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Symbolic shape inference cannot follow the mask arithmetic; ONNX's own inference can.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        # What TensorRT builds too: symmetric int8 activations and weights (zero points 0), biases
        # left in float (TensorRT dequantizes no int32).
        quantize_static(
            str(prepared),
            str(target),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: AVX2 without VNNI saturates u8 x s8 products at 8 bits.
            reduce_range=True,
            op_types_to_quantize=["Conv", "ConvTranspose"],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
    return psnr_db(_pixels(source, evaluation), _pixels(target, evaluation))


def _inputs(faces: np.ndarray, features: np.ndarray, count: int, offset: int) -> list[dict]:
    frames = [framing.pingpong(offset + i, len(faces)) for i in range(count)]
    windows = features[np.arange(count) % len(features)]
    crops = np.ascontiguousarray(faces[frames])
    return [{"FACE": crops[i : i + BATCH], "AUDIO_FEATURES": windows[i : i + BATCH]} for i in range(0, count, BATCH)]


def _pixels(model: Path, batches: list[dict]) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["FACE_RGB"], batch)[0] for batch in batches])


class _Batches(CalibrationDataReader):
    def __init__(self, batches: list[dict]):
        self.pending = iter(batches)

    def get_next(self):
        return next(self.pending, None)
