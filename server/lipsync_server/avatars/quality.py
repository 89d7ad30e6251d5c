"""How close a cheaper form of an avatar version comes to its float32 output (the record of it:
quality_record.py).

Both cheaper forms are measured the same way: the version's served output (FACE_RGB, the pixels
the compositor pastes) on the avatar's own crops, with audio features of synthetic speech, in
the cheaper form against float32, as PSNR in dB. The record is the version's quality.json:

- an INT8 version (`lipsync-server quantize`): {"precision": "int8", "psnr_db": ..., ...};
- a float version measured in bfloat16: {"bf16": {"psnr_db": ..., "cpu": ..., "runtime": ...}},
  written on a machine whose CPU computes bf16 natively (where the server would run it).

The server runs a version in bf16 only where its record reaches the bar
(quality_record.MIN_PSNR_DB, or the avatar config's min_bf16_psnr_db).
"""

from pathlib import Path

import numpy as np

from lipsync_protocol import framing
from lipsync_server import runtimes
from lipsync_server.audio import mel_pipeline
from lipsync_server.audio.encoder_inputs import encoder_inputs
from lipsync_server.calibration import voice

from . import media, quality_record, repository

EVALUATION_FRAMES = 16
BATCH = 8


def psnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images (or stacks of them), in dB."""
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def audio_features(encoder_onnx: Path, audio: np.ndarray) -> np.ndarray:
    """Per-frame encoder windows [F, 32, 16, 16] of 16 kHz audio, as the server computes them."""
    import onnxruntime as ort

    mel = mel_pipeline.mel_of(audio)
    session = ort.InferenceSession(str(encoder_onnx), providers=["CPUExecutionProvider"])
    return session.run(["AUDIO_FEATURES"], encoder_inputs(mel))[0][0]


def network_inputs(faces: np.ndarray, features: np.ndarray, count: int, offset: int) -> list[dict]:
    """`count` frames' UNet inputs from `offset` on (the avatar's loop), in batches."""
    frames = [framing.pingpong(offset + i, len(faces)) for i in range(count)]
    windows = features[np.arange(count) % len(features)]
    crops = np.ascontiguousarray(faces[frames])
    return [{"FACE": crops[i : i + BATCH], "AUDIO_FEATURES": windows[i : i + BATCH]} for i in range(0, count, BATCH)]


def evaluation_inputs(faces: np.ndarray, encoder_onnx: Path) -> list[dict]:
    """Frames from the middle of the avatar's loop with speech no calibration uses (seed 12)."""
    features = audio_features(encoder_onnx, voice.speech(1.0, framing.SAMPLE_RATE, seed=12))
    return network_inputs(faces, features, EVALUATION_FRAMES, offset=len(faces) // 2)


def measure_version_bf16(model_repository: Path, name: str, version: int) -> float:
    """measure_bf16() for a version of an avatar in a model repository."""
    faces = np.load(media.media_dir(model_repository, name) / "faces.npy", mmap_mode="r")
    folder = repository.version_folder(model_repository, name, version)
    return measure_bf16(folder, faces, repository.latest_encoder(model_repository))


def measure_bf16(version_folder: Path, faces: np.ndarray, encoder_onnx: Path) -> float:
    """Runs the version in fp32 and in bf16 with OpenVINO (what the CPU profile serves), records
    the PSNR in its quality.json and returns it. Needs a CPU with native bf16."""
    onnx_file = Path(version_folder) / "model.onnx"
    batches = evaluation_inputs(faces, encoder_onnx)
    outputs = {}
    for precision in runtimes.PRECISIONS:
        session = runtimes.open_session(onnx_file, runtimes.OPENVINO, precision, threads=0)
        outputs[precision] = np.concatenate([session.run(["FACE_RGB"], batch)[0] for batch in batches])
        description = session.description
    # Identical pixels give an infinite PSNR, which JSON cannot hold: 100 dB says the same.
    measured = min(psnr_db(outputs[runtimes.FP32], outputs[runtimes.BF16]), 100.0)
    entry = {"psnr_db": round(measured, 2), "evaluation_frames": EVALUATION_FRAMES, "runtime": description}
    quality_record.write(
        version_folder, {**quality_record.read(version_folder), "bf16": {**entry, "cpu": runtimes.cpu_name()}}
    )
    return measured
