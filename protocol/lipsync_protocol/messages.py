"""Error messages quote what they were sent only in part: a message must stay small whatever a
request held (gRPC carries it in a status header of at most 16 KB; logs and UIs show it).
Messages that a client acts on are made and read here, by both sides."""

import re

QUOTE_LIMIT = 64


def quoted(value: str) -> str:
    """repr() of `value`, or of its first QUOTE_LIMIT characters and its full length."""
    if len(value) <= QUOTE_LIMIT:
        return repr(value)
    return f"{value[:QUOTE_LIMIT]!r}... ({len(value)} characters)"


# What a client says when a new version does not load on a GPU server: its TensorRT plan.
PLAN_HINT = (
    "GPU profile: a new version loads once its TensorRT plan is built on the serving GPU: "
    "lipsync-server plans REPOSITORY --model avatar_NAME (in the image, import and quantize build it, "
    "and a start builds the missing ones)"
)


LOADING = "is loading"
_RETRY = re.compile(r"(?:is loading|could not be loaded now).*retry in (\d+(?:\.\d+)?) s")


def loading(avatar: str, retry_s: float) -> str:
    """The refusal (UNAVAILABLE) for a request whose avatar is being loaded on demand."""
    return f"avatar {quoted(avatar)} {LOADING} (not resident on this server): retry in {retry_s:.0f} s"


def load_failed(avatar: str, retry_s: float, why: str) -> str:
    """The refusal (UNAVAILABLE) for a request whose avatar's load failed for a passing reason."""
    return f"avatar {quoted(avatar)} could not be loaded now ({quoted(why)}): retry in {retry_s:.0f} s"


def retry_after(message: str) -> float | None:
    """Seconds to wait before retrying, if `message` is the refusal loading() makes."""
    found = _RETRY.search(message)
    return float(found[1]) if found else None
