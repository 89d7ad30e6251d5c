"""Large catalogs made cheaply, for tests and benchmarks: avatars that share another avatar's
weights and media through hard links (no copies), and config parameters changed in place."""

import os
import re
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


def set_parameter(config: Path, key: str, value: str) -> None:
    """Sets `parameters { key: ... }` in a config.pbtxt, as a new file: the old one may be a
    hard link shared with other avatars."""
    text, found = re.subn(
        rf'(key: "{key}" value: {{ string_value: )"[^"]*"', rf'\1"{value}"', config.read_text(encoding="utf-8")
    )
    if found != 1:
        raise ValueError(f"{config}: no parameter {key}")
    config.unlink()
    config.write_text(text, encoding="utf-8")
