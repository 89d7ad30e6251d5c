"""The administrator key that guards the server's model-repository API (list, load, unload).

Triton's repository API can load a model from uploaded files, which is running code on the
server, so the launcher (`lipsync-server serve`) never serves it open. A server's key comes
from `--admin-key`, `$LIPSYNC_ADMIN_KEY`, or the key file, which the launcher creates on its
first start (random, mode 0600 in a 0700 folder):

    $LIPSYNC_ADMIN_KEY_FILE, or ${XDG_CONFIG_HOME:-~/.config}/lipsync/admin-key

The client and the CLI send `admin_key=`/`--admin-key`, else `$LIPSYNC_ADMIN_KEY`, else, for
servers on this machine (loopback addresses only: a key of this machine's server is never sent
to another one), the key file's. Rotate it with `lipsync-server serve --new-admin-key`.
"""

import os
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


def for_client(url: str, explicit: str | None = None) -> str | None:
    """The key a client sends to the server at `url` (host:port), if it has one."""
    given = explicit or os.environ.get(ENV_KEY)
    if given:
        return given
    return read_key_file() if urlsplit(f"//{url}").hostname in LOOPBACK_HOSTS else None
