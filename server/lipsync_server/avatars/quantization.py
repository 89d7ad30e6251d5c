"""INT8 versions of an avatar's UNet: static quantization calibrated on the avatar's own crops.

ONNX Runtime's quantizer writes a QDQ graph (QuantizeLinear/DequantizeLinear around each
convolution, per-channel weight scales), which ONNX Runtime runs with integer kernels and
TensorRT builds as an explicitly quantized INT8 engine. Calibration and the quality check use
the avatar's face crops with audio features of the project's synthetic speech, on different
frames and different speech, so the reported PSNR is not measured on the calibration data.
"""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from lipsync_protocol import avatar_names, framing
from lipsync_server.calibration import voice
from lipsync_server.networks import tensorrt_rules

from . import media, quality, quality_record, repository
from .quality_record import MIN_PSNR_DB

CALIBRATION_FRAMES = 8  # ORT keeps every activation of every calibration frame: about 0.35 GB each


class QualityError(ValueError):
    """The quantized network's output is too far from the float network's."""


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
        psnr = quantize_model(source, quantized, faces, encoder)
        tensorrt_rules.check(quantized)  # the GPU profile builds every version into a plan
        if psnr < min_psnr_db:
            raise QualityError(
                f"INT8 copy of avatar {name!r} version {source_version} reaches {psnr:.1f} dB PSNR "
                f"against it, below the required {min_psnr_db:.1f} dB: not added"
            )
        target = folder / str(versions[-1] + 1)
        target.mkdir()
        shutil.copyfile(quantized, target / "model.onnx")
    (target / "model.py").write_text(repository.AVATAR_MODEL_PY)
    record = {
        "precision": "int8",
        "source_version": source_version,
        "psnr_db": round(psnr, 2),
        "evaluation_frames": quality.EVALUATION_FRAMES,
        "calibration_frames": CALIBRATION_FRAMES,
    }
    quality_record.write(target, record)
    return int(target.name), psnr


def quantize_model(source: Path, target: Path, faces: np.ndarray, encoder_onnx: Path) -> float:
    """Writes the INT8 QDQ copy of UNet graph `source` to `target`, calibrated on `faces` (the
    avatar's crops); returns its output's PSNR in dB against the float graph's."""
    calibration = quality.network_inputs(
        faces,
        quality.audio_features(encoder_onnx, voice.speech(2.0, framing.SAMPLE_RATE, seed=11)),
        CALIBRATION_FRAMES,
        offset=0,
    )
    evaluation = quality.evaluation_inputs(faces, encoder_onnx)
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
    return quality.psnr_db(_pixels(source, evaluation), _pixels(target, evaluation))


def _pixels(model: Path, batches: list[dict]) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["FACE_RGB"], batch)[0] for batch in batches])


class _Batches(CalibrationDataReader):
    def __init__(self, batches: list[dict]):
        self.pending = iter(batches)

    def get_next(self):
        return next(self.pending, None)
