"""Builds the GPU profile's TensorRT plans with trtexec: model.plan beside every served model.onnx.

    lipsync-server plans /models                     # every model that has none for this GPU yet
    lipsync-server plans /models --model avatar_may  # one model

A plan holds kernels for one GPU and one TensorRT release, built from one ONNX file: the record
beside it (model.plan.json) names all four, and a plan whose record still matches is kept, so a
server with a persistent repository restarts without rebuilding what has not changed, and pods
that share the repository share its plans (a lock beside each plan: one pod builds it). A build
that fails leaves model.plan.failed.json (with model.plan.log): the version is skipped, and not
tried again until what it is built from changes.

When plans are built: the image builds the pinned avatars' plans and the encoder's before it
serves, and the others while it serves (launcher/container.py); `lipsync-server import` and
`quantize` build a new version's plan where trtexec is (the image), else this command does; and
an avatar loaded on demand whose plan is still missing has it built first (backend/residency.py).

Shapes and precisions, each from one source:
- audio_encoder: MEL from 16 mel frames up to the longest audio the validator accepts
  (request_validator's max_audio_seconds), WINDOW_STARTS up to that audio's windows; float32,
  TF32 off (trtexec enables it by default): its output feeds every frame of the clip.
- avatar versions: batch 1 to the avatar config's max_batch_size (opt: its largest preferred
  batch). TensorRT 10 builds fp16 where it finds it faster (--fp16), and INT8 versions
  (QuantizeLinear nodes, from `lipsync-server quantize`) add --int8 so that their explicit scales
  are used; from TensorRT 11 networks are strongly typed and trtexec has no --fp16: the graph's
  own types decide (deploy/image-facts.toml records each release's flags).
"""

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lipsync_protocol import avatar_names, framing
from lipsync_server.model_configs import max_audio_seconds

ENCODER = "audio_encoder"
# Where the image keeps the libraries trtexec needs that the tritonserver image lacks
# (Dockerfile.triton): for trtexec only, never for tritonserver.
LIBRARIES_ENV = "LIPSYNC_TRTEXEC_LIBRARY_PATH"
BUILT, KEPT, FAILED = "built", "kept", "failed"


@dataclass(frozen=True)
class Plan:
    onnx: Path
    flags: tuple[str, ...]  # trtexec's shape and precision flags

    @property
    def path(self) -> Path:
        return self.onnx.with_suffix(".plan")

    def beside(self, suffix: str) -> Path:
        """model.plan.json (the record), .failed.json, .log, .lock, .partial."""
        return self.onnx.with_name(f"model.plan{suffix}")

    @property
    def record_path(self) -> Path:
        return self.beside(".json")


def model_config(folder: Path) -> model_config_pb2.ModelConfig:
    """A model's GPU-profile config (config.pbtxt)."""
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def precision_flags(quantized: bool, tensorrt: int) -> tuple[str, ...]:
    """trtexec's precision flags for a float or INT8 (Q/DQ) graph under TensorRT `tensorrt` (major)."""
    if tensorrt >= 11:  # strongly typed: the graph's types decide; --fp16 and --int8 are refused
        return ()
    return ("--fp16", "--int8") if quantized else ("--fp16",)


def encoder_plans(repository: Path) -> list[Plan]:
    max_mel = framing.mel_frame_count(round(max_audio_seconds(repository) * framing.SAMPLE_RATE))
    opt_mel = framing.mel_frame_count(8 * framing.SAMPLE_RATE)
    # A stream's segment may have one window more than a clip of its length (the rounding follows
    # the whole stream): the encoder's CPU model allows the same.
    windows = {"min": 1, "opt": framing.window_count(opt_mel), "max": framing.window_count(max_mel) + 1}
    mels = {"min": framing.MIN_MEL_FRAMES, "opt": opt_mel, "max": max_mel}
    shapes = tuple(f"--{kind}Shapes=MEL:1x{mels[kind]}x80,WINDOW_STARTS:1x{windows[kind]}" for kind in mels)
    return [Plan(onnx, (*shapes, "--noTF32")) for onnx in sorted((repository / ENCODER).glob("[0-9]*/model.onnx"))]


def avatar_plans(folder: Path, tensorrt: int) -> list[Plan]:
    config = model_config(folder)
    largest = config.max_batch_size
    opt = max(config.dynamic_batching.preferred_batch_size, default=largest)
    shapes = tuple(
        f"--{kind}Shapes=FACE:{b}x320x320x3,AUDIO_FEATURES:{b}x32x16x16"
        for kind, b in (("min", 1), ("opt", opt), ("max", largest))
    )
    return [
        Plan(onnx_file, (*shapes, *precision_flags(is_quantized(onnx_file), tensorrt)))
        for onnx_file in sorted(folder.glob("[0-9]*/model.onnx"))
    ]


def is_tensorrt_model(name: str) -> bool:
    return name == ENCODER or avatar_names.avatar_name(name) is not None


def plans(repository: Path, tensorrt: int, models: Iterable[str] | None = None) -> list[Plan]:
    """The plans of the repository's TensorRT models (or of those named)."""
    repository = Path(repository)
    names = (
        [ENCODER, *sorted(p.name for p in repository.glob(avatar_names.MODEL_PREFIX + "*"))]
        if models is None
        else [name for name in models if is_tensorrt_model(name)]
    )
    found = []
    for name in names:
        if not (repository / name / "config.pbtxt").is_file():
            raise FileNotFoundError(f"no model {name!r} in {repository}")
        found += encoder_plans(repository) if name == ENCODER else avatar_plans(repository / name, tensorrt)
    return found


def is_quantized(onnx_file: Path) -> bool:
    import onnx  # here: the model processes that import this module may have no onnx

    return any(
        node.op_type == "QuantizeLinear" for node in onnx.load(str(onnx_file), load_external_data=False).graph.node
    )


def tensorrt_version(trtexec: str = "trtexec") -> int:
    """trtexec's TensorRT as NV_TENSORRT_VERSION (10.3.0: 100300), from the banner it prints."""
    banner = subprocess.run([trtexec, "--help"], capture_output=True, text=True, env=trtexec_environment()).stdout
    found = re.search(r"\[TensorRT v(\d+)\]", banner)
    if not found:
        raise RuntimeError(f"{trtexec} --help printed no TensorRT version: {banner[:120]!r}")
    return int(found.group(1))


def major(version: int) -> int:
    return version // 10000


@functools.cache
def build_target(trtexec: str = "trtexec") -> dict:
    """The image's Triton release, its TensorRT and the GPU that plans are built for."""
    gpu = (
        subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "--id=0"], capture_output=True, text=True
        ).stdout.strip()
        if shutil.which("nvidia-smi")
        else "unknown"
    )
    return {
        "triton": os.environ.get("NVIDIA_TRITON_SERVER_VERSION", "unknown"),
        "tensorrt": tensorrt_version(trtexec),
        "gpu": gpu,
    }


def record(plan: Plan, target: dict) -> dict:
    """What the plan was built from and for: the ONNX file, the flags, the image, the GPU."""
    return {"onnx_sha256": hashlib.sha256(plan.onnx.read_bytes()).hexdigest(), "flags": list(plan.flags), **target}


def is_current(plan: Plan, wanted: dict) -> bool:
    return plan.path.is_file() and _read(plan.record_path) == wanted


def failed_before(plan: Plan, wanted: dict) -> bool:
    """The same build failed already: it would again."""
    return _read(plan.beside(".failed.json")) == wanted


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def trtexec_environment() -> dict[str, str]:
    env = dict(os.environ)
    extra = env.get(LIBRARIES_ENV)
    if extra:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (extra, env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def build(plan: Plan, target: dict, trtexec: str = "trtexec") -> str:
    """BUILT, KEPT (its record matches) or FAILED (see model.plan.log beside it)."""
    wanted = record(plan, target)
    with open(plan.beside(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pods sharing the repository: one builds, the others find it built
        if is_current(plan, wanted):
            return KEPT
        if failed_before(plan, wanted):
            return FAILED
        partial = plan.beside(".partial")
        command = [trtexec, f"--onnx={plan.onnx}", f"--saveEngine={partial}", "--skipInference", *plan.flags]
        with open(plan.beside(".log"), "w") as out:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=trtexec_environment())
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            plan.beside(".failed.json").write_text(json.dumps(wanted, indent=2) + "\n")
            return FAILED
        partial.replace(plan.path)
        plan.record_path.write_text(json.dumps(wanted, indent=2) + "\n")
        plan.beside(".failed.json").unlink(missing_ok=True)
        return BUILT


def build_each(
    repository: Path, models: Iterable[str] | None, trtexec: str = "trtexec", report: Callable[[str], None] = print
) -> list[Plan]:
    """Builds the named models' plans (all: None) that are missing or stale, one after another;
    a plan that fails is reported and skipped. Returns the failed ones."""
    target = build_target(trtexec)
    failed = []
    for plan in plans(repository, major(target["tensorrt"]), models):
        outcome = build(plan, target, trtexec)
        where = f" (see {plan.beside('.log')})" if outcome == FAILED else ""
        report(f"{outcome} {plan.path}{where}")
        if outcome == FAILED:
            failed.append(plan)
    return failed


def on_demand(repository: Path, profile_plans: bool, trtexec: str = "trtexec") -> Callable[[str], None] | None:
    """What an on-demand load runs first where the server's profile has TensorRT plans
    (`profile_plans`) and trtexec is (the image): builds the model's missing plans, raising
    RuntimeError naming a version whose plan failed. None elsewhere: there is nothing to build."""
    if not profile_plans or not shutil.which(trtexec):
        return None

    def prepare(model: str) -> None:
        failed = build_each(repository, [model], trtexec, report=lambda line: None)
        if failed:
            versions = ", ".join(plan.onnx.parent.name for plan in failed)
            raise RuntimeError(f"the TensorRT plan of version {versions} failed to build: model.plan.log")

    return prepare


def build_all(repository: Path, model: str | None = None, trtexec: str = "trtexec") -> int:
    """`lipsync-server plans`: 0 when every plan is built, 1 if any failed."""
    failed = build_each(repository, [model] if model else None, trtexec, lambda line: print(line, flush=True))
    return 1 if failed else 0
