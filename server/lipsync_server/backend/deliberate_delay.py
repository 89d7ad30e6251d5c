"""A model slowed on purpose, for the project's tests of what a session shows when the server is
late: an avatar's CPU config may set `deliberate_delay_ms_per_frame`, and its UNet then takes
that much longer a frame. A server started outside the tests refuses such a config (the model
fails to load), so a production repository cannot be slowed by it."""

import os

PARAMETER = "deliberate_delay_ms_per_frame"
ALLOWED_ENV = "LIPSYNC_TESTS"  # "1" in the environment of the servers the tests start


def seconds_per_frame(config: dict, environ=os.environ) -> float:
    """The delay the config asks for (0 if none); ValueError outside the tests."""
    value = config.get("parameters", {}).get(PARAMETER, {}).get("string_value")
    if value is None:
        return 0.0
    if environ.get(ALLOWED_ENV) != "1":
        raise ValueError(f"parameter {PARAMETER!r} slows the model on purpose: it is for the project's tests only")
    try:
        delay_ms = float(value)
    except ValueError:
        raise ValueError(f"parameter {PARAMETER!r}: {value[:16]!r} is not a number of milliseconds") from None
    if not 0 <= delay_ms <= 1000:
        raise ValueError(f"parameter {PARAMETER!r}: {delay_ms:g} ms is outside 0-1000")
    return delay_ms / 1000
