"""Moved to lipsync_protocol.framing (what client and server share); this alias goes in the next
release."""

from lipsync_protocol.framing import *  # noqa: F403
