"""The headers a Triton user sends with the keys of the tests' servers (lipsync_protocol.keys): the key
files that conftest.key_files points the servers and clients at."""

from lipsync_protocol.keys import ADMIN, INFERENCE


def inference_headers(protocol: str) -> dict[str, str]:
    return INFERENCE.headers(INFERENCE.read_file(), protocol)


def admin_headers(protocol: str) -> dict[str, str]:
    return inference_headers(protocol) | ADMIN.headers(ADMIN.read_file(), protocol)
