"""The keys a server starts with, made on first start if there are none, and the tritonserver
flags every server of this project runs with, the keys' among them (what each key guards and how
clients find it: lipsync_protocol.keys)."""

import os
import secrets

from lipsync_protocol.keys import ADMIN, INFERENCE, Key

# Triton's restricted-API groups under the administrator key: all but health (what probes and
# load balancers ask, unkeyed: it changes nothing and costs nothing) and inference.
ADMIN_APIS = ("model-repository", "model-config", "metadata", "statistics", "shared-memory", "trace", "logging")


def write_key_file(kind: Key) -> str:
    """A new random key, written where only this user can read it; returns the key."""
    path = kind.file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    staging = path.with_name(path.name + ".new")
    staging.unlink(missing_ok=True)
    # Created 0600 from the start: the key is never readable by others, not even briefly.
    with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as out:
        out.write(key + "\n")
    staging.replace(path)
    return key


def for_server(kind: Key, explicit: str | None = None) -> str:
    """The key a server starts with: given, from the environment, from the file, or new."""
    return explicit or os.environ.get(kind.env) or kind.read_file() or write_key_file(kind)


def source(kind: Key, explicit: str | None = None) -> str:
    """Where for_server() takes the key from, for the launcher to say (never the key itself)."""
    return "the command line" if explicit else f"${kind.env}" if os.environ.get(kind.env) else str(kind.file())


def server_flags(admin_key: str, inference_key: str) -> list[str]:
    """The flags every server of this project runs with, wherever it runs (TritonServer.command:
    the launcher, `make cluster`, the image). What differs by profile and installation is named
    in launcher/profiles.py and tritonserver.Installation."""
    return [
        "--model-control-mode=explicit",
        "--exit-timeout-secs=30",
        # Readiness is the server's and its ensembles' (the client checks `lipsync`): one
        # avatar that failed to load must not take the whole server out of rotation.
        "--strict-readiness=false",
        # The configs are complete; auto-completing them would start one more python-backend
        # process per model load, seconds of an avatar's on-demand load.
        "--disable-auto-complete-config",
        # Faces and frames cross process boundaries: start each stub's region big enough.
        "--backend-config=python,shm-default-byte-size=16777216",
        "--backend-config=python,shm-growth-byte-size=33554432",
        *restricted_api_flags(admin_key, inference_key),
    ]


def restricted_api_flags(admin_key: str, inference_key: str) -> list[str]:
    """tritonserver's flags that make every API group but health ask for a key (gRPC inference
    stays open: no browser can speak gRPC)."""
    for key in (admin_key, inference_key):
        check_key(key)
    admin = f"{','.join(ADMIN_APIS)}:{ADMIN.header}={admin_key}"
    return [
        f"--grpc-restricted-protocol={admin}",
        f"--http-restricted-api={admin}",
        f"--http-restricted-api=inference:{INFERENCE.header}={inference_key}",
    ]


def check_key(key: str) -> None:
    """A key is a header value: printable ASCII without spaces, and long enough to guess at."""
    if len(key) < 16 or not all(33 <= ord(c) < 127 for c in key):
        raise ValueError("a key must be at least 16 printable ASCII characters without spaces")
