"""Lets a server's requests in flight finish before it stops.

Triton's own SIGTERM handling stops every model's scheduler at once, which fails an ensemble
request caught between two steps. Unloading the ensembles first refuses new requests while the
in-flight ones go on through the step models; an ensemble's unload completes when its in-flight
requests have. Used by `lipsync-server serve` and by the container's entrypoint:

    lipsync-server drain 127.0.0.1:8000 [--timeout 30]   # key: $LIPSYNC_ADMIN_KEY or the key file
"""

import sys
import time

import tritonclient.http as httpclient

from lipsync_protocol import waiting
from lipsync_protocol.ensemble import ENSEMBLE, RAW_ENSEMBLE
from lipsync_protocol.keys import ADMIN

ENSEMBLES = (ENSEMBLE, RAW_ENSEMBLE)


def drain(http_address: str, admin_key: str | None, timeout: float = 30.0) -> bool:
    """Unloads the ensembles and waits (at most `timeout`) until they are gone; False if the
    server could not be drained (it should be stopped all the same)."""
    client = httpclient.InferenceServerClient(http_address, network_timeout=timeout)
    headers = ADMIN.headers(admin_key, "http") or None
    started = time.monotonic()

    def gone() -> bool:  # unloading is asynchronous: an ensemble is gone once its state leaves UNLOADING
        states = {e["name"]: e.get("state") for e in client.get_model_repository_index(headers=headers)}
        return not any(states.get(e) in ("READY", "UNLOADING") for e in ENSEMBLES)

    try:
        for ensemble in ENSEMBLES:
            client.unload_model(ensemble, headers=headers)
        return waiting.until(gone, max(0.0, timeout - (time.monotonic() - started)), "the ensembles unloaded", 0.2)
    except TimeoutError:
        return False
    except Exception as error:
        print(f"lipsync-server drain: {error}", file=sys.stderr)
        return False
    finally:
        client.close()
