"""Builds the GPU profile's TensorRT plans with trtexec: model.plan beside every served model.onnx.

    lipsync-server plans /models                   # every model; what the image runs at start
    lipsync-server plans /models --model avatar_may  # after `lipsync-server import/quantize` there

A plan holds kernels for one GPU and one TensorRT release, built from one ONNX file: the record
beside it (model.plan.json) names all three, and a plan whose record still matches is kept, so a
server with a persistent repository restarts without rebuilding what has not changed. A version
added after start (lipsync-server import, quantize) has no plan until this runs for it; Triton
refuses to load it until then.

Shapes and precisions, each from one source:
- audio_encoder: MEL from 16 mel frames up to the longest audio the validator accepts
  (request_validator's max_audio_seconds), WINDOW_STARTS up to that audio's windows; float32,
  TF32 off (trtexec enables it by default): its output feeds every frame of the clip.
- avatar versions: batch 1 to the avatar config's max_batch_size (opt: its largest preferred
  batch); fp16 where TensorRT finds it faster. INT8 versions (QuantizeLinear nodes, from `lipsync-server
  quantize`) add --int8 so that their explicit scales are used.
"""

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lipsync import avatar_names, framing
from lipsync_server.backend.request_rules import max_audio_seconds

ENCODER = "audio_encoder"


@dataclass(frozen=True)
class Plan:
    onnx: Path
    flags: tuple[str, ...]  # trtexec's shape and precision flags

    @property
    def path(self) -> Path:
        return self.onnx.with_suffix(".plan")

    @property
    def record_path(self) -> Path:
        return self.onnx.with_name("model.plan.json")


def model_config(folder: Path) -> model_config_pb2.ModelConfig:
    """A model's GPU-profile config (config.pbtxt)."""
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def encoder_plans(repository: Path) -> list[Plan]:
    max_mel = framing.mel_frame_count(round(max_audio_seconds(repository) * framing.SAMPLE_RATE))
    opt_mel = framing.mel_frame_count(8 * framing.SAMPLE_RATE)
    # A stream's segment may have one window more than a clip of its length (the rounding follows
    # the whole stream): the encoder's CPU model allows the same.
    windows = {"min": 1, "opt": framing.window_count(opt_mel), "max": framing.window_count(max_mel) + 1}
    mels = {"min": framing.MIN_MEL_FRAMES, "opt": opt_mel, "max": max_mel}
    shapes = tuple(f"--{kind}Shapes=MEL:1x{mels[kind]}x80,WINDOW_STARTS:1x{windows[kind]}" for kind in mels)
    return [Plan(onnx, (*shapes, "--noTF32")) for onnx in sorted((repository / ENCODER).glob("[0-9]*/model.onnx"))]


def avatar_plans(folder: Path) -> list[Plan]:
    config = model_config(folder)
    largest = config.max_batch_size
    opt = max(config.dynamic_batching.preferred_batch_size, default=largest)
    shapes = tuple(
        f"--{kind}Shapes=FACE:{b}x320x320x3,AUDIO_FEATURES:{b}x32x16x16"
        for kind, b in (("min", 1), ("opt", opt), ("max", largest))
    )
    plans = []
    for onnx_file in sorted(folder.glob("[0-9]*/model.onnx")):
        precision = ("--fp16", "--int8") if is_quantized(onnx_file) else ("--fp16",)
        plans.append(Plan(onnx_file, (*shapes, *precision)))
    return plans


def plans(repository: Path, model: str | None = None) -> list[Plan]:
    """The plans of the repository's TensorRT models (or of one of them)."""
    repository = Path(repository)
    folders = (
        [repository / model]
        if model
        else [repository / ENCODER, *sorted(repository.glob(avatar_names.MODEL_PREFIX + "*"))]
    )
    found = []
    for folder in folders:
        if not (folder / "config.pbtxt").is_file():
            raise FileNotFoundError(f"no model {folder.name!r} in {repository}")
        found += encoder_plans(repository) if folder.name == ENCODER else avatar_plans(folder)
    return found


def is_quantized(onnx_file: Path) -> bool:
    return any(
        node.op_type == "QuantizeLinear" for node in onnx.load(str(onnx_file), load_external_data=False).graph.node
    )


def build_target() -> dict:
    """The image's Triton release and the GPU that plans are built for (asked once per run)."""
    gpu = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "--id=0"], capture_output=True, text=True
        ).stdout.strip()
        if shutil.which("nvidia-smi")
        else "unknown"
    )
    return {"triton": os.environ.get("NVIDIA_TRITON_SERVER_VERSION", "unknown"), "gpu": gpu}


def record(plan: Plan, target: dict) -> dict:
    """What the plan was built from and for: the ONNX file, the flags, the image, the GPU."""
    return {"onnx_sha256": hashlib.sha256(plan.onnx.read_bytes()).hexdigest(), "flags": list(plan.flags), **target}


def is_current(plan: Plan, wanted: dict) -> bool:
    try:
        return plan.path.is_file() and json.loads(plan.record_path.read_text()) == wanted
    except (OSError, ValueError):
        return False


def build(plan: Plan, target: dict, trtexec: str = "trtexec") -> bool:
    """Builds the plan unless its record matches; True if it built one."""
    wanted = record(plan, target)
    if is_current(plan, wanted):
        return False
    partial, log = plan.path.with_name("model.plan.partial"), plan.path.with_name("model.plan.log")
    command = [trtexec, f"--onnx={plan.onnx}", f"--saveEngine={partial}", "--skipInference", *plan.flags]
    with open(log, "w") as out:
        if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
            raise RuntimeError(f"trtexec failed for {plan.onnx}: see {log}")
    partial.replace(plan.path)
    plan.record_path.write_text(json.dumps(wanted, indent=2) + "\n")
    return True


def build_all(repository: Path, model: str | None = None, trtexec: str = "trtexec") -> int:
    """Builds the plans that are missing or stale (`lipsync-server plans`)."""
    target = build_target()
    for plan in plans(repository, model):
        print(f"{'built' if build(plan, target, trtexec) else 'kept'} {plan.path}", flush=True)
    return 0
