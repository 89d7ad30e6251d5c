"""Moved to lipsync_protocol.avatar_names (what client and server share); this alias goes in the next
release."""

from lipsync_protocol.avatar_names import *  # noqa: F403
