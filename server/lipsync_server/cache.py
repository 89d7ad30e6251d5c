"""The folder of what this machine's tools measure or fetch once and then reuse (never user
data: anything in it can be made again): $LIPSYNC_CACHE_DIR, else
${XDG_CACHE_HOME:-~/.cache}/lipsync."""

import os
from pathlib import Path

ENV_CACHE = "LIPSYNC_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lipsync"
