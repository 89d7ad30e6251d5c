"""The two keys a lip-sync server requires, and where a client finds them.

Anything on this machine can reach a server on loopback: other local users, and every web page
open in a local browser (a cross-site POST needs no permission; DNS rebinding makes a page
same-origin with any port). So everything but gRPC inference and health asks for a key:

- the **administrator key** (header `lipsync-admin-key`): model control (Triton's repository
  API loads uploaded models, which is running code on the server), shared memory (a registered
  region can be named as where a request's outputs go), logging and trace settings,
  statistics, metadata and model configs;
- the **inference key** (header `lipsync-inference-key`): inference over HTTP, which any page
  can send. Over gRPC, which no browser speaks, inference needs no key.

A server's keys come from its flags, `$LIPSYNC_ADMIN_KEY` / `$LIPSYNC_INFERENCE_KEY`, or the
key files, which the launcher creates on its first start (random, mode 0600 in a 0700 folder):

    $LIPSYNC_ADMIN_KEY_FILE, or ${XDG_CONFIG_HOME:-~/.config}/lipsync/admin-key
    $LIPSYNC_INFERENCE_KEY_FILE, or ${XDG_CONFIG_HOME:-~/.config}/lipsync/inference-key

A client sends the key it is given, else the environment's, else, for servers on this machine
(loopback addresses only: a key of this machine's server is never sent to another one), the key
file's. Rotate both with `lipsync-server serve --new-keys`.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Triton's gRPC endpoint reads restricted-protocol headers under this prefix.
GRPC_PREFIX = "triton-grpc-protocol-"


@dataclass(frozen=True)
class Key:
    header: str  # the header Triton checks (--grpc-restricted-protocol, --http-restricted-api)
    env: str  # the key itself
    file_env: str  # where the key file is
    file_name: str  # the key file's name in the default folder

    def file(self) -> Path:
        if os.environ.get(self.file_env):
            return Path(os.environ[self.file_env])
        config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
        return Path(config) / "lipsync" / self.file_name

    def read_file(self) -> str | None:
        try:
            key = self.file().read_text().strip()
        except FileNotFoundError:
            return None
        return key or None

    def for_client(self, url: str, explicit: str | None = None) -> str | None:
        """The key a client sends to the server at `url` (host:port), if it has one."""
        given = explicit or os.environ.get(self.env)
        if given:
            return given
        return self.read_file() if urlsplit(f"//{url}").hostname in LOOPBACK_HOSTS else None

    def headers(self, key: str | None, protocol: str) -> dict[str, str]:
        """The header carrying `key` over `protocol` ("grpc" or "http"); none without a key."""
        if not key:
            return {}
        return {(GRPC_PREFIX if protocol == "grpc" else "") + self.header: key}


ADMIN = Key("lipsync-admin-key", "LIPSYNC_ADMIN_KEY", "LIPSYNC_ADMIN_KEY_FILE", "admin-key")
INFERENCE = Key("lipsync-inference-key", "LIPSYNC_INFERENCE_KEY", "LIPSYNC_INFERENCE_KEY_FILE", "inference-key")
