"""The administrator key that guards the server's model-repository API (list, load, unload).

Triton's repository API can load a model from uploaded files, which is running code on the
server, so `python -m lipsync.server` never serves it open. The key comes from, in order:
`--admin-key`, `$LIPSYNC_ADMIN_KEY`, or the key file, which the launcher creates on its first
start (random, mode 0600 in a 0700 folder):

    $LIPSYNC_ADMIN_KEY_FILE, or ${XDG_CONFIG_HOME:-~/.config}/lipsync/admin-key

The client and the CLI read the same file for servers on this machine (loopback addresses
only: a key of this machine's server is never sent to another one). Rotate it by writing a new
one (`python -m lipsync.server --new-admin-key`) and restarting the server.
"""

import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

ENV_KEY = "LIPSYNC_ADMIN_KEY"
ENV_FILE = "LIPSYNC_ADMIN_KEY_FILE"
# The header Triton checks on restricted endpoints (--grpc-restricted-protocol, --http-restricted-api).
HEADER = "lipsync-admin-key"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def key_file() -> Path:
    if os.environ.get(ENV_FILE):
        return Path(os.environ[ENV_FILE])
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "lipsync" / "admin-key"


def read_key_file() -> str | None:
    try:
        key = key_file().read_text().strip()
    except FileNotFoundError:
        return None
    return key or None


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


def for_client(url: str, explicit: str | None = None) -> str | None:
    """The key a client sends to the server at `url` (host:port), if it has one."""
    given = explicit or os.environ.get(ENV_KEY)
    if given:
        return given
    return read_key_file() if urlsplit(f"//{url}").hostname in LOOPBACK_HOSTS else None
