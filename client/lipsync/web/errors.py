"""What the page shows when a stream fails: the server's own words, without Triton's framing,
and what to do about it."""

from tritonclient.utils import InferenceServerException

ENSEMBLE_PREFIX = "in ensemble 'lipsync', "


def readable(error: Exception, server_url: str) -> str:
    if not isinstance(error, InferenceServerException):
        if isinstance(error, OSError):
            return f"the lip-sync server at {server_url} is not reachable ({str(error)[:120]})"
        return str(error)[:240] or type(error).__name__  # the gateway's own words, or what failed
    message = (error.message() or "").replace(ENSEMBLE_PREFIX, "")
    status = str(error.status() or "")
    if "UNAVAILABLE" in status or status == "503":
        if "failed to connect" in message.lower() or "connection" in message.lower():
            return f"the lip-sync server at {server_url} is not reachable: {message}"
        return f"the server is busy, try again in a moment ({message})"
    if "INVALID_ARGUMENT" in status or status == "400":
        return f"the server refused the audio or avatar: {message}"
    return f"the server failed: {message}"
