"""Moved to lipsync_protocol.keys (what client and server share); this alias goes in the next
release."""

from lipsync_protocol.keys import *  # noqa: F403
