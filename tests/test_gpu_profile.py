"""The GPU profile checked without a GPU: what the NGC image would otherwise find at start.

BLS calls ask for CPU memory; the TensorRT plans' shapes and precisions follow the configs and
the validator's limit; the configs' tensors are the ONNX graphs'; plans are rebuilt exactly when
what they were built from changes; the image's DALI is the one the CPU profile tests; the image's
Python dependencies resolve for its Python."""

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import tomllib
from nvidia.dali._utils import autoserialize
from tritonclient.grpc import model_config_pb2

from lipsync_protocol import framing
from lipsync_server import model_configs
from lipsync_server.audio.encoder_inputs import encoder_inputs
from lipsync_server.avatars import tensorrt_plans

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"
DOCKERFILE = (ROOT / "Dockerfile.triton").read_text()
# The DALI the image's DALI backend has, as the Dockerfile records it beside its release.
BACKEND_DALI = re.search(r"^ARG BACKEND_DALI=(\S+)$", DOCKERFILE, re.M).group(1)
# The image's Python (Ubuntu 24.04 in 26.x releases) and platform, for the dry-run resolution.
IMAGE_PYTHON, IMAGE_GLIBC = "3.12", (2, 39)


def test_bls_calls_ask_for_cpu_memory():
    """A TensorRT model's outputs stay in GPU memory unless asked otherwise, and as_numpy()
    refuses them ("Tensor is stored in GPU and cannot be converted to NumPy")."""
    calls = []
    for path in [*REPOSITORY.glob("*/1/model.py"), *(ROOT / "server" / "lipsync_server" / "backend").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "InferenceRequest":
                memory = {k.arg: ast.unparse(k.value) for k in node.keywords}.get("preferred_memory", "")
                calls.append((path.parent.parent.name, memory))
    assert calls, "no BLS call found"
    assert all("TRITONSERVER_MEMORY_CPU" in memory for _, memory in calls), calls


def onnx_tensors(path: Path) -> dict[str, tuple[int, list]]:
    graph = onnx.load(str(path)).graph
    return {
        v.name: (v.type.tensor_type.elem_type, [d.dim_value or -1 for d in v.type.tensor_type.shape.dim])
        for v in (*graph.input, *graph.output)
    }


def config_tensors(config: model_config_pb2.ModelConfig) -> dict[str, tuple[int, list]]:
    onnx_type = {
        model_config_pb2.TYPE_FP32: onnx.TensorProto.FLOAT,
        model_config_pb2.TYPE_UINT8: onnx.TensorProto.UINT8,
        model_config_pb2.TYPE_INT64: onnx.TensorProto.INT64,
    }
    batch = [-1] if config.max_batch_size > 1 else [1]
    return {t.name: (onnx_type[t.data_type], batch + list(t.dims)) for t in (*config.input, *config.output)}


def same_shape(ours: list[int], theirs: list[int]) -> bool:
    """Equal dims where both are fixed (-1: variable, or left symbolic by the export)."""
    return len(ours) == len(theirs) and all(a == b or -1 in (a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("model", ["audio_encoder", "avatar_demo"])
def test_gpu_configs_name_the_graphs_tensors(model):
    config = config_tensors(tensorrt_plans.model_config(REPOSITORY / model))
    for onnx_file in sorted((REPOSITORY / model).glob("[0-9]*/model.onnx")):
        graph = onnx_tensors(onnx_file)
        assert config.keys() == graph.keys(), onnx_file
        for name, (kind, dims) in config.items():
            assert kind == graph[name][0] and same_shape(dims, graph[name][1]), (onnx_file, name, dims, graph[name])


def test_encoder_output_has_the_configs_shape_at_the_plans_shortest_and_longest_input():
    import numpy as np
    import onnxruntime as ort

    (plan,) = tensorrt_plans.plans(REPOSITORY, 10, ["audio_encoder"])
    expected = config_tensors(tensorrt_plans.model_config(REPOSITORY / "audio_encoder"))["AUDIO_FEATURES"][1]
    session = ort.InferenceSession(str(plan.onnx), providers=["CPUExecutionProvider"])
    for kind in ("min", "max"):
        mel = np.zeros(shape(plan.flags, kind, "MEL"), np.float32)
        inputs = encoder_inputs(mel[0])
        windows = inputs["WINDOW_STARTS"].shape[1]
        assert shape(plan.flags, "min", "WINDOW_STARTS")[1] <= windows <= shape(plan.flags, "max", "WINDOW_STARTS")[1]
        (features,) = session.run(None, inputs)
        assert same_shape(expected, list(features.shape)) and -1 not in features.shape
        assert features.shape[1] == framing.frame_count(framing.HOP * (mel.shape[1] - 1)), kind


def shape(flags: tuple[str, ...], kind: str, tensor: str) -> list[int]:
    value = next(f for f in flags if f.startswith(f"--{kind}Shapes="))
    return [int(d) for d in dict(p.split(":") for p in value.split("=", 1)[1].split(","))[tensor].split("x")]


def test_encoder_plan_takes_the_longest_audio_the_validator_accepts():
    (plan,) = tensorrt_plans.plans(REPOSITORY, 10, ["audio_encoder"])
    seconds = model_configs.max_audio_seconds(REPOSITORY)
    assert seconds <= framing.MAX_SECONDS  # the exported graph's own limit
    assert shape(plan.flags, "max", "MEL") == [1, framing.mel_frame_count(round(seconds * 16000)), 80]
    assert shape(plan.flags, "min", "MEL") == [1, framing.MIN_MEL_FRAMES, 80]
    assert "--noTF32" in plan.flags and "--fp16" not in plan.flags  # the encoder stays fp32


def test_avatar_plans_batch_as_their_config_and_int8_versions_use_their_scales(tmp_path):
    config = tensorrt_plans.model_config(REPOSITORY / "avatar_demo")
    plans = tensorrt_plans.plans(REPOSITORY, 10, ["avatar_demo"])  # TensorRT 10: weakly typed
    assert plans
    for plan in plans:
        assert shape(plan.flags, "max", "FACE") == [config.max_batch_size, 320, 320, 3]
        assert shape(plan.flags, "min", "AUDIO_FEATURES") == [1, 32, 16, 16]
        assert "--fp16" in plan.flags and "--int8" not in plan.flags
    assert all(w.batch_size <= config.max_batch_size for w in config.model_warmup)
    quantized = onnx.helper.make_model(
        onnx.helper.make_graph([onnx.helper.make_node("QuantizeLinear", ["x", "s"], ["y"])], "q", [], [])
    )
    onnx.save(quantized, str(tmp_path / "model.onnx"))
    assert tensorrt_plans.is_quantized(tmp_path / "model.onnx")


def test_a_plan_is_kept_while_what_it_was_built_from_is_unchanged(tmp_path):
    (tmp_path / "1").mkdir()
    onnx_file = tmp_path / "1" / "model.onnx"
    onnx_file.write_bytes(b"graph one")
    plan = tensorrt_plans.Plan(onnx_file, ("--fp16",))
    target = {"triton": "26.06", "tensorrt": 110000, "gpu": "NVIDIA H200"}
    built_for = tensorrt_plans.record(plan, target)
    plan.path.write_bytes(b"engine")
    plan.record_path.write_text(json.dumps(built_for))
    assert tensorrt_plans.is_current(plan, tensorrt_plans.record(plan, target))  # a restart keeps it
    onnx_file.write_bytes(b"graph two")  # a new export of the version
    assert not tensorrt_plans.is_current(plan, tensorrt_plans.record(plan, target))
    onnx_file.write_bytes(b"graph one")
    assert not tensorrt_plans.is_current(plan, {**built_for, "gpu": "another GPU"})  # a plan for another GPU
    assert not tensorrt_plans.is_current(plan, {**built_for, "tensorrt": 100300})  # or another TensorRT
    other_flags = tensorrt_plans.Plan(onnx_file, ("--fp16", "--int8"))
    assert not tensorrt_plans.is_current(other_flags, tensorrt_plans.record(other_flags, target))


def test_the_image_serves_the_dali_the_cpu_profile_tests():
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dali"]
    pins = [re.fullmatch(r"nvidia-dali-cuda\d+==([\d.]+)", d) for d in server if d.startswith("nvidia-dali")]
    assert len(pins) == 1 and pins[0], server
    assert pins[0].group(1) == BACKEND_DALI
    assert "nvidia-dali" not in DOCKERFILE  # the backend's own DALI, no second one
    from nvidia.dali import __version__

    assert __version__ == BACKEND_DALI  # what these tests run


def test_the_dali_backend_serializes_the_served_pipeline():
    spec = importlib.util.spec_from_file_location("dali_model", REPOSITORY / "mel" / "1" / "dali.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # what the backend runs first; building the pipeline needs CUDA
    # What the backend serializes: the one @autoserialize pipeline DALI's own discovery finds.
    assert autoserialize._discover_autoserialize(module, visited=[]) == [module.mel]
    assert module.MAX_BATCH_SIZE == tensorrt_plans.model_config(REPOSITORY / "mel").max_batch_size


def image_requirements() -> list[str]:
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    protocol = tomllib.loads((ROOT / "protocol" / "pyproject.toml").read_text())["project"]
    installs = re.findall(r'pip install [^\n]*\./protocol "\.\[(\w+)\]"', DOCKERFILE)
    assert installs == ["image"], "the image installs the protocol, and the server with its `image` extra"
    # The server's dependency on the protocol is met by ./protocol in the same pip command.
    server_own = [r for r in server["dependencies"] if not r.startswith(protocol["name"])]
    return [*protocol["dependencies"], *server_own, *extra(server, "image")]


def extra(project: dict, name: str) -> list[str]:
    """An extra's requirements, with the project's own extras it names spelled out."""
    found = []
    for requirement in project["optional-dependencies"][name]:
        own = re.fullmatch(re.escape(project["name"]) + r"\[(\w+)\]", requirement)
        found += extra(project, own.group(1)) if own else [requirement]
    return found


def test_the_image_dependencies_resolve_for_its_python(tmp_path):
    major, minor = IMAGE_GLIBC
    platforms = [f"manylinux_{major}_{m}_x86_64" for m in range(minor, 16, -1)] + [
        "manylinux2014_x86_64",
        "linux_x86_64",
    ]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--ignore-installed",
        "--only-binary=:all:",
        "--python-version",
        IMAGE_PYTHON,
        "--implementation",
        "cp",
        "--target",
        str(tmp_path / "t"),
        "--report",
        str(tmp_path / "report.json"),
        *(f"--platform={p}" for p in platforms),
        *image_requirements(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    installed = {i["metadata"]["name"].lower() for i in json.loads((tmp_path / "report.json").read_text())["install"]}
    assert {"tritonclient", "numpy", "onnx", "opencv-python-headless", "scipy", "onnxruntime", "openvino"} <= installed
    assert not any(name.startswith("nvidia-dali") for name in installed)
