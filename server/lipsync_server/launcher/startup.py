"""Which models a server loads at start: the pipeline's own and the pinned avatars. The other
avatars in the repository load on their first request (backend/residency.py), so a repository
of any number of avatars starts as fast as one of a single avatar."""

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from lipsync_protocol import avatar_names

RESIDENCY_MODEL = "face_generator"


def pinned_avatars(repository: Path, profile: str) -> frozenset[str] | None:
    """The face_generator config's pinned_avatars (its profile's config where it has one); None
    for a repository without face_generator, where nothing would load avatars on demand."""
    folder = Path(repository) / RESIDENCY_MODEL
    path = folder / "configs" / f"{profile}.pbtxt"
    if not path.is_file():
        path = folder / "config.pbtxt"
    if not path.is_file():
        return None
    config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    listed = config.parameters["pinned_avatars"].string_value if "pinned_avatars" in config.parameters else ""
    return avatar_names.name_list(listed)


def startup_models(repository: Path, profile: str) -> list[str]:
    repository = Path(repository)
    pinned = pinned_avatars(repository, profile)
    models = sorted(entry.name for entry in repository.iterdir() if (entry / "config.pbtxt").is_file())
    if pinned is None:
        return models
    return [m for m in models if avatar_names.avatar_name(m) is None or avatar_names.avatar_name(m) in pinned]
