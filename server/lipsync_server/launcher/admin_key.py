"""The key a server starts with, made on first start if there is none (where keys live and how
clients find them: lipsync.admin_key)."""

import os
import secrets

from lipsync.admin_key import ENV_KEY, key_file, read_key_file


def write_key_file() -> str:
    """A new random key, written where only this user can read it; returns the key."""
    path = key_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    staging = path.with_name(path.name + ".new")
    staging.unlink(missing_ok=True)
    # Created 0600 from the start: the key is never readable by others, not even briefly.
    with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(key + "\n")
    staging.replace(path)
    return key


def for_server(explicit: str | None = None) -> str:
    """The key a server starts with: given, from the environment, from the file, or new."""
    return explicit or os.environ.get(ENV_KEY) or read_key_file() or write_key_file()


def source(explicit: str | None = None) -> str:
    """Where for_server() takes the key from, for the launcher to say (never the key itself)."""
    return "--admin-key" if explicit else f"${ENV_KEY}" if os.environ.get(ENV_KEY) else str(key_file())
