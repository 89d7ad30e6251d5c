"""Every model config, GPU profile included, parses as a Triton ModelConfig, and the ensemble's
steps fit the models they name in both profiles (the GPU profile cannot run here)."""

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "model_repository"
AVATAR_TEMPLATE = ROOT / "server" / "lipsync_server" / "avatars" / "avatar_model"
PIPELINE = [
    "lipsync",
    "lipsync_faces",
    "request_validator",
    "mel",
    "audio_encoder",
    "face_generator",
    "compositor",
]
CONFIG_FILES = sorted(
    [p for name in PIPELINE for p in (REPOSITORY / name).glob("config*.pbtxt")]
    + [p for name in PIPELINE for p in (REPOSITORY / name / "configs").glob("*.pbtxt")]
    + [AVATAR_TEMPLATE / "config.pbtxt", AVATAR_TEMPLATE / "configs" / "cpu.pbtxt"]
)


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def load(model: str, profile: str) -> model_config_pb2.ModelConfig:
    folder = AVATAR_TEMPLATE if model.startswith("avatar_") else REPOSITORY / model
    custom = folder / "configs" / f"{profile}.pbtxt"
    return parse(custom if profile != "gpu" and custom.exists() else folder / "config.pbtxt")


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_parses(path):
    config = parse(path)
    assert config.input and config.output
    if config.name:
        assert config.name == (path.parent.parent.name if path.parent.name == "configs" else path.parent.name)


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
@pytest.mark.parametrize("name", ["lipsync", "lipsync_faces"])
def test_ensemble_steps_match_models(name, profile):
    ensemble = load(name, profile)
    produced = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = load(step.model_name, profile)
        assert ensemble.max_batch_size <= model.max_batch_size, step.model_name
        inputs = {t.name: t for t in model.input}
        outputs = {t.name: t for t in model.output}
        for model_input, tensor in step.input_map.items():
            assert model_input in inputs, f"{step.model_name} has no input {model_input}"
            assert tensor in produced, f"{tensor} is used by {step.model_name} before any step makes it"
            assert produced[tensor][0] == inputs[model_input].data_type, f"{step.model_name}.{model_input} type"
            assert len(produced[tensor][1]) == len(inputs[model_input].dims), f"{step.model_name}.{model_input} rank"
        required = {name for name, t in inputs.items() if not t.optional}
        assert required <= set(step.input_map), f"{step.model_name} misses {required - set(step.input_map)}"
        for model_output, tensor in step.output_map.items():
            assert model_output in outputs, f"{step.model_name} has no output {model_output}"
            produced[tensor] = (outputs[model_output].data_type, list(outputs[model_output].dims))
    for output in ensemble.output:
        assert produced[output.name] == (output.data_type, list(output.dims))


@pytest.mark.parametrize("model", ["mel", "audio_encoder", "avatar_demo"])
def test_profiles_share_tensor_contracts(model):
    gpu, cpu = load(model, "gpu"), load(model, "cpu")
    signature = lambda c: sorted((t.name, t.data_type, list(t.dims)) for t in [*c.input, *c.output])  # noqa: E731
    assert signature(gpu) == signature(cpu)
    assert gpu.backend != cpu.backend == "python"


def test_face_generator_chunks_fit_the_unet_batch():
    chunk = int(load("face_generator", "cpu").parameters["frames_per_unet_request"].string_value)
    assert chunk <= min(load("avatar_demo", p).max_batch_size for p in ("cpu", "gpu"))


def test_lipsync_faces_is_lipsync_with_the_networks_output():
    """One pipeline, two outputs: the debug ensemble's steps are lipsync's, the face generator
    returning the network's float faces instead of the compositor's frames."""
    whole, faces = load("lipsync", "gpu"), load("lipsync_faces", "gpu")
    assert list(whole.input) == list(faces.input)
    for ours, theirs in zip(whole.ensemble_scheduling.step, faces.ensemble_scheduling.step, strict=True):
        assert (ours.model_name, dict(ours.input_map)) == (theirs.model_name, dict(theirs.input_map))
        if ours.model_name != "face_generator":
            assert dict(ours.output_map) == dict(theirs.output_map)
    assert dict(whole.ensemble_scheduling.step[-1].output_map) == {"FRAMES": "FRAMES"}
    assert dict(faces.ensemble_scheduling.step[-1].output_map) == {"FACES_RAW": "FACES_RAW"}
