"""Error messages quote what they were sent only in part: a message must stay small whatever a
request held (gRPC carries it in a status header of at most 16 KB; logs and UIs show it)."""

QUOTE_LIMIT = 64


def quoted(value: str) -> str:
    """repr() of `value`, or of its first QUOTE_LIMIT characters and its full length."""
    if len(value) <= QUOTE_LIMIT:
        return repr(value)
    return f"{value[:QUOTE_LIMIT]!r}... ({len(value)} characters)"
