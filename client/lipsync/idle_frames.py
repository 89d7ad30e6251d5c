"""The avatar's face while a conversation (lipsync.conversation) listens, shared by the sessions
of one process."""

import threading

import numpy as np

from lipsync_protocol import framing

from . import streaming
from .client import LipsyncClient
from .pace import Pace
from .streaming import Segment

CONTEXT = streaming.CONTEXT_FRAMES  # frames of silence rendered before the first one shown


class IdleFrames:
    """The avatar's face while it listens: for each of its frames, the network's output for
    silence there, each rendered once (when a session starts, or as the loop first reaches it)
    and kept: showing it again costs nothing. Silence makes the same encoder features everywhere,
    so these are the frames a long silence renders at any position (no seam when speech starts or
    stops). The sessions open at once on one server, avatar and version share them (shared())."""

    def __init__(
        self, client: LipsyncClient, avatar: str, version: int | None, frame_size: tuple[int, int] | None = None
    ):
        self.client, self.avatar, self.version, self.frame_size = client, avatar, version, frame_size
        self.pace = Pace()  # of the server for these sessions: each one's requests teach it
        self.loop_frames = 0  # the avatar's frame count, from the first render
        self.frames: dict[int, bytes] = {}  # avatar frame index -> JPEG
        self.users = 0  # sessions sharing these frames
        self._rendering = threading.Lock()  # sessions that need the same frames render them once

    def index(self, position: int) -> int:
        return framing.pingpong(position, self.loop_frames)

    def ensure(self, first: int, count: int) -> int:
        """Renders the avatar's frames first .. first + count - 1 (clipped) that are missing;
        returns how many it rendered."""
        with self._rendering:
            missing = [i for i in range(first, min(first + count, self.loop_frames)) if i not in self.frames]
            if not missing:
                return 0
            start, end = missing[0], missing[-1] + 1
            # Positions loop_period + i show frame i; the segment's first CONTEXT are context only.
            period = max(1, 2 * self.loop_frames - 2)
            audio = np.zeros(streaming.samples_needed(CONTEXT + end - start), np.float32)
            part = Segment(0, audio.size, CONTEXT, end - start, CONTEXT)
            rate, version = framing.SAMPLE_RATE, self.version
            jpegs = self.client.render(audio, rate, self.avatar, version, period + start, part, 30.0, self.frame_size)
            self.frames.update(zip(range(start, end), jpegs))
            return len(jpegs)

    def learn_loop(self) -> None:
        """Asks the server for the avatar's frame count (one frame of silence, rendered), once."""
        with self._rendering:
            if self.loop_frames:
                return
            audio = np.zeros(streaming.samples_needed(CONTEXT + 1), np.float32)
            part = Segment(0, audio.size, CONTEXT, 1, CONTEXT)
            _, self.loop_frames = self.client.render_in_loop(
                audio, framing.SAMPLE_RATE, self.avatar, self.version, 0, part, 30.0, self.frame_size
            )

    @classmethod
    def shared(
        cls, url: str, avatar: str, version: int | None, frame_size: tuple[int, int] | None, client_options: dict
    ) -> "IdleFrames":
        """The idle frames of the sessions open on this server, avatar, version and frame size
        (and client options: keys); new ones if there are none. release() when the session ends: they are
        kept while a session uses them, so a session opened after every other has closed sees a
        version imported since (the latest, where `version` is None)."""
        key = (url, avatar, version, frame_size, repr(sorted(client_options.items())))
        with _SHARED_LOCK:
            idle = _SHARED.get(key)
            if idle is None:
                idle = _SHARED[key] = cls(LipsyncClient(url, **client_options), avatar, version, frame_size)
            idle.users += 1
            return idle

    def release(self) -> None:
        with _SHARED_LOCK:
            self.users -= 1
            if self.users > 0:
                return
            for key, idle in list(_SHARED.items()):
                if idle is self:
                    del _SHARED[key]
        self.client.close()


_SHARED: dict[tuple, IdleFrames] = {}
_SHARED_LOCK = threading.Lock()  # sessions may run on several event loops' threads
