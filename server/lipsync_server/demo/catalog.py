"""Large catalogs made cheaply, for tests and benchmarks: avatars that share another avatar's
weights and media through hard links (no copies)."""

import os
import shutil
from pathlib import Path


def link_avatar(repository: Path, source: str, name: str, versions: list[int]) -> Path:
    """avatar_<name>: avatar_<source>'s media, configs and the given versions, hard-linked."""
    origin = Path(repository) / f"avatar_{source}"
    kept = {str(v) for v in versions}
    dropped = [entry.name for entry in origin.iterdir() if entry.name.isdigit() and entry.name not in kept]
    target = Path(repository) / f"avatar_{name}"
    shutil.copytree(origin, target, copy_function=os.link, ignore=shutil.ignore_patterns("__pycache__", *dropped))
    return target
