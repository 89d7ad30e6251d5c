"""The CPU runtimes of the served graphs (OpenVINO and ONNX Runtime), the choice between them, and
the bf16 quality bar. The served graphs are the repository's own: the demo avatar's versions
(1: reference size, seeded; 2: the trained quarter-width network) and the shared encoder."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync_server import runtimes
from lipsync_server.avatars import quality, quality_record, repository
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.backend import runtime_choice
from lipsync_server.cache import ENV_CACHE
from lipsync_server.calibration import voice
from lipsync_server.demo import synthetic
from lipsync_server.networks import checkpoints
from lipsync_server.networks.export import export_unet

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"
TRAINED = REPOSITORY / "avatar_demo" / str(synthetic.TRAINED_VERSION) / "model.onnx"
REFERENCE_SIZE = REPOSITORY / "avatar_demo" / str(synthetic.BENCHMARK_VERSION) / "model.onnx"

needs_bf16 = pytest.mark.skipif(not runtimes.has_native_bf16(), reason="this CPU has no native bf16")


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    faces = AvatarMedia(media_dir(REPOSITORY, "demo")).faces
    features = quality.audio_features(repository.latest_encoder(REPOSITORY), voice.speech(1.0, 16000, seed=3))
    return quality.network_inputs(faces, features, 8, offset=40)[0]


def run(path, runtime, precision, feeds, names=("FACE_RGB",)):
    return runtimes.open_session(path, runtime, precision, threads=2).run(list(names), feeds)


@pytest.mark.parametrize("graph", [TRAINED, REFERENCE_SIZE], ids=["trained", "reference_size"])
def test_openvino_fp32_serves_what_onnx_runtime_serves(graph, inputs):
    ours_raw, ours = run(graph, runtimes.OPENVINO, runtimes.FP32, inputs, ("FACE_RAW", "FACE_RGB"))
    theirs_raw, theirs = run(graph, runtimes.ONNXRUNTIME, runtimes.FP32, inputs, ("FACE_RAW", "FACE_RGB"))
    assert np.abs(ours_raw - theirs_raw).max() < 1e-3
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1 and np.mean(ours != theirs) < 0.001


@pytest.mark.parametrize("precision", [runtimes.FP32, pytest.param(runtimes.BF16, marks=needs_bf16)])
def test_a_frame_is_the_same_in_any_batch(precision, inputs):
    """Streaming renders a frame in a smaller batch than a whole render does: the pixels must not
    depend on the batch a frame ran in."""
    session = runtimes.open_session(TRAINED, runtimes.OPENVINO, precision, threads=2)
    whole = session.run(["FACE_RGB"], inputs)[0]
    alone = [session.run(["FACE_RGB"], {k: v[i : i + 1] for k, v in inputs.items()})[0][0] for i in range(3)]
    assert all(np.array_equal(whole[i], alone[i]) for i in range(3))


def test_the_runtimes_refuse_what_they_cannot_run():
    with pytest.raises(ValueError, match="ONNX Runtime runs fp32 only"):
        runtimes.open_session(TRAINED, runtimes.ONNXRUNTIME, runtimes.BF16, threads=1)
    with pytest.raises(ValueError, match="unknown runtime 'tvm'"):
        runtimes.open_session(TRAINED, "tvm", runtimes.FP32, threads=1)
    if not runtimes.has_native_bf16():
        with pytest.raises(ValueError, match="native bfloat16"):
            runtimes.open_session(TRAINED, runtimes.OPENVINO, runtimes.BF16, threads=1)


def test_the_faster_runtime_is_measured_once_and_remembered(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    runtime, precision, how = runtime_choice.fastest(TRAINED, runtimes.FP32, threads=2, batch=2)
    assert runtime in runtimes.RUNTIMES and precision == "fp32"
    assert how.startswith("measured now") and "onnxruntime" in how
    assert list(json.loads((tmp_path / "cpu-runtimes.json").read_text()).values()) == [f"{runtime} {precision}"]
    again = runtime_choice.fastest(TRAINED, runtimes.FP32, threads=2, batch=2)
    assert again[:2] == (runtime, precision) and again[2].startswith("measured before")
    # Another network shape, batch or thread count is measured on its own.
    assert runtime_choice.fastest(REFERENCE_SIZE, runtimes.FP32, threads=2, batch=2)[2].startswith("measured now")
    assert runtime_choice.fastest(TRAINED, runtimes.FP32, threads=1, batch=2)[2].startswith("measured now")
    assert len(json.loads((tmp_path / "cpu-runtimes.json").read_text())) == 3


def test_avatars_of_one_network_share_the_measurement(tmp_path, monkeypatch):
    """Weights differ between avatars, shapes do not: a second avatar of the same width loads
    without measuring again."""
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    torch.manual_seed(41)
    other = tmp_path / "other.onnx"
    unet = checkpoints.load_unet(max((ROOT / "checkpoints" / "demo").glob("*.pth")))  # the trained demo
    with torch.no_grad():
        for weights in unet.parameters():
            weights.mul_(1 + 0.1 * torch.randn_like(weights))  # another person of the same network
    export_unet(unet, other)
    assert other.read_bytes() != TRAINED.read_bytes()
    runtime_choice.fastest(TRAINED, runtimes.FP32, threads=2, batch=1)
    assert runtime_choice.fastest(other, runtimes.FP32, threads=2, batch=1)[2].startswith("measured before")


@pytest.mark.parametrize("winner", ["onnxruntime fp32", "openvino fp32", "openvino bf16"])
def test_where_bf16_is_allowed_the_faster_of_bf16_and_fp32_is_served(winner, tmp_path, monkeypatch):
    """bf16 allowed is not bf16 served: ONNX Runtime has no bf16 on CPU, and on some CPUs and
    graphs OpenVINO's fp32 is the faster. What was measured fastest is what runs."""
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    key = runtime_choice._key(TRAINED, "bf16 or fp32", 2, 8, False)
    (tmp_path / "cpu-runtimes.json").write_text(json.dumps({key: winner}))
    runtime, precision, _ = runtime_choice.fastest(TRAINED, runtimes.BF16, threads=2, batch=8, or_fp32=True)
    assert f"{runtime} {precision}" == winner


def test_a_precision_asked_for_is_kept_where_the_runtime_has_it():
    assert set(runtime_choice.candidates(runtimes.BF16).values()) == {
        (runtimes.ONNXRUNTIME, runtimes.FP32),  # it has no bf16
        (runtimes.OPENVINO, runtimes.BF16),
    }
    assert set(runtime_choice.candidates(runtimes.FP32, or_fp32=True).values()) == {
        (runtimes.ONNXRUNTIME, runtimes.FP32),
        (runtimes.OPENVINO, runtimes.FP32),
    }


@pytest.mark.parametrize(
    ("native", "measured", "expected"),
    [(False, 60.0, "fp32"), (True, None, "fp32"), (True, 34.9, "fp32"), (True, 35.0, "bf16"), (True, 80.0, "bf16")],
)
def test_bf16_is_served_only_where_the_cpu_has_it_and_the_version_reaches_the_bar(native, measured, expected):
    precision, why = quality_record.served_precision(native, measured, quality_record.MIN_PSNR_DB)
    assert precision == expected and why.startswith("auto: ")


@needs_bf16
@pytest.mark.parametrize("version", [synthetic.TRAINED_VERSION, synthetic.BENCHMARK_VERSION])
def test_the_demo_versions_reach_the_bf16_bar_and_record_it(version, tmp_path):
    folder = tmp_path / str(version)
    folder.mkdir()
    (folder / "model.onnx").write_bytes((REPOSITORY / "avatar_demo" / str(version) / "model.onnx").read_bytes())
    faces = AvatarMedia(media_dir(REPOSITORY, "demo")).faces
    measured = quality.measure_bf16(folder, faces, repository.latest_encoder(REPOSITORY))
    assert measured >= quality_record.MIN_PSNR_DB
    assert quality_record.bf16_psnr(folder) == pytest.approx(measured, abs=0.01)
    assert quality_record.read(folder)["bf16"]["runtime"].startswith("OpenVINO")


def test_a_session_compiled_for_one_frame_a_run_gives_the_same_pixels():
    """The avatars run one frame at a time, compiled for that shape (fixed_batch): the same
    output as the graph with an open batch. OpenVINO may pick other kernels for a fixed shape
    (on AVX2-only CPUs it does), whose float rounding moves a pixel that sits on a truncation
    boundary by one level: equal to float rounding, and in pixels within one level."""
    faces = AvatarMedia(media_dir(REPOSITORY, "demo")).faces[:1]
    features = np.random.default_rng(3).uniform(0, 3, (1, 32, 16, 16)).astype(np.float32)
    feeds = {"FACE": np.ascontiguousarray(faces), "AUDIO_FEATURES": features}
    (raw_open, rgb_open), (raw_fixed, rgb_fixed) = [
        runtimes.open_session(TRAINED, runtimes.OPENVINO, runtimes.FP32, 2, fixed_batch).run(
            ["FACE_RAW", "FACE_RGB"], feeds
        )
        for fixed_batch in (0, 1)
    ]
    assert np.abs(raw_open - raw_fixed).max() < 1e-4
    levels = np.abs(rgb_open.astype(np.int16) - rgb_fixed.astype(np.int16))
    assert levels.max() <= 1 and (levels > 0).mean() < 1e-3
