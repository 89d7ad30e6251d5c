"""`lipsync-server container`: what the image runs (Dockerfile.triton's entrypoint, the chart,
KServe). The launcher's server (tritonserver.TritonServer) with the image's tritonserver, on
every address, with the profile and the repository from the environment:

    LIPSYNC_PROFILE           gpu (default) or cpu (launcher/profiles.py)
    LIPSYNC_MODEL_REPOSITORY  a folder (default /models), or object storage that tritonserver
                              reads itself (s3://, gs://, as://)
    LIPSYNC_ADMIN_KEY, LIPSYNC_INFERENCE_KEY   required: every API but health and gRPC inference
                              asks for one (lipsync_protocol.keys)

On the GPU profile with a writable repository folder, the TensorRT plans of the models that load
at start (the encoder, the pinned avatars) are built before serving and the others while it
serves (avatars/tensorrt_plans.py): a catalog of any size starts in the time of its pinned set,
and a version whose plan fails is reported and skipped. A model process that dies restarts the
server (TritonServer.supervise), so the pod is unready until the pipeline is back.
"""

import os
import re
import sys
import threading
from pathlib import Path

from lipsync_protocol.keys import ADMIN, INFERENCE

from .keys import check_key
from .profiles import PROFILE_ENV, Profile, named
from .tritonserver import IMAGE, StopSignals, TritonServer, is_object_storage

REPOSITORY_ENV = "LIPSYNC_MODEL_REPOSITORY"
DEFAULT_REPOSITORY = "/models"
# The DALI backend serializes mel/1/dali.py only from such paths (deploy/image-facts.toml).
DALI_PATH = re.compile(r"[A-Za-z0-9/._]+")
# Loading the pinned avatars can take long on a new GPU; the chart's startup probe bounds it.
READY_TIMEOUT_S = 24 * 3600.0


def server_from_environment(env: dict[str, str], extra_args: tuple[str, ...] = ()) -> TritonServer:
    """The server the image runs; ValueError naming the setting that is wrong."""
    profile = named(env.get(PROFILE_ENV, "gpu"))
    repository = env.get(REPOSITORY_ENV, DEFAULT_REPOSITORY)
    keys = [env.get(kind.env, "").strip() for kind in (ADMIN, INFERENCE)]
    for kind, key in zip((ADMIN, INFERENCE), keys, strict=True):
        try:
            check_key(key)
        except ValueError as error:
            raise ValueError(f"${kind.env}: {error} (for example: openssl rand -base64 32)") from None
    if profile.tensorrt_plans and not is_object_storage(repository):
        check_dali_path(repository)
    return TritonServer(
        repository if is_object_storage(repository) else Path(repository),
        host="0.0.0.0",
        profile=profile,
        extra_args=extra_args,
        admin_key=keys[0],
        inference_key=keys[1],
        installation=IMAGE,
    )


def check_dali_path(repository: str) -> None:
    if not DALI_PATH.fullmatch(repository) or ".." in repository:
        raise ValueError(
            f"${REPOSITORY_ENV}: the DALI backend loads mel only from a path of letters, digits, '/', '.' "
            f"and '_' without '..', not {repository[:64]!r}"
        )


def builds_plans(server: TritonServer, profile: Profile) -> bool:
    if not profile.tensorrt_plans or not isinstance(server.repository, Path):
        return False
    if not os.access(server.repository, os.W_OK):  # a read-only mount (KServe's pvc://): built before
        print(f"lipsync-server: {server.repository} is read-only: serving the TensorRT plans in it", flush=True)
        return False
    return True


def build_plans(repository: Path, models: list[str] | None) -> None:
    """Builds plans (models: those named; None: all), reporting each; never raises, so that
    one version whose plan fails cannot stop the server."""
    from lipsync_server.avatars import tensorrt_plans

    def report(line: str) -> None:
        print(f"lipsync-server: plan {line}", flush=True)

    try:
        tensorrt_plans.build_each(repository, models, report=report)
    except (OSError, RuntimeError, ValueError) as error:
        report(f"building stopped: {error}")


def main(extra_args: tuple[str, ...] = ()) -> int:
    try:
        server = server_from_environment(dict(os.environ), extra_args)
    except ValueError as error:
        print(f"lipsync-server container: {error}", file=sys.stderr)
        return 2
    plans = builds_plans(server, server.profile)
    if plans:
        assert isinstance(server.repository, Path)
        build_plans(server.repository, server.startup_models())
    stopping = StopSignals()
    server.start()
    if server.wait_ready(timeout=READY_TIMEOUT_S, stopping=stopping):
        print("lipsync-server: serving", flush=True)
        if plans:
            assert isinstance(server.repository, Path)
            threading.Thread(target=build_plans, args=(server.repository, None), name="plans", daemon=True).start()
    return server.supervise(stopping)
