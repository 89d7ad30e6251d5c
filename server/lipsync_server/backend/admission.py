"""Admission by expected wait: a request is taken only if the frames already in the works will be
done within the wait its caller accepts, at the rate this server is measured to make frames.

Frames are served first come, first served (the UNet's batcher takes queued chunks in order), so
a request's wait is the frames ahead of it over the service rate. Refusing at once, rather than
queueing for longer than the caller can use, keeps the latency of what is served bounded under
overload and lets the client try another replica while there is still time.
"""

import hashlib
import hmac
import math
import mmap
import os
import stat
import struct
from pathlib import Path

from . import ticket

BOARD_DIRECTORY = Path("/dev/shm")
SIZE = struct.calcsize("d")


class ServiceRate:
    """Frames made per second of busy time (time with frames in the works), smoothed
    exponentially over about `smoothing_s` seconds of work. None until something has been made."""

    def __init__(self, smoothing_s: float = 5.0):
        self.smoothing_s = smoothing_s
        self.frames_per_s: float | None = None
        self._since: float | None = None  # start of the busy time not yet measured

    def busy(self, now: float) -> None:
        if self._since is None:
            self._since = now

    def made(self, frames: int, now: float, still_busy: bool) -> None:
        if self._since is None:
            return
        seconds = max(now - self._since, 1e-6)
        sample = frames / seconds
        if self.frames_per_s is None:
            self.frames_per_s = sample
        else:
            # Time-weighted: a completion after a long stretch of work counts for more than one
            # of several that finish together.
            weight = 1.0 - math.exp(-seconds / self.smoothing_s)
            self.frames_per_s += weight * (sample - self.frames_per_s)
        self._since = now if still_busy else None

    def idle(self) -> None:
        self._since = None


class Admission:
    """Frames in the works on this server, and whether one more request may join them."""

    def __init__(self, max_frames: int, rate: ServiceRate | None = None):
        self.max_frames = max_frames
        self.rate = rate or ServiceRate()
        self.frames = 0

    def expected_wait_s(self) -> float:
        """Until the frames already in the works are done (0 before any rate is measured)."""
        if not self.frames or not self.rate.frames_per_s:
            return 0.0
        return self.frames / self.rate.frames_per_s

    def refusal(self, count: int, max_wait_s: float) -> str | None:
        """Why a request of `count` frames that can still wait `max_wait_s` is not taken now, or
        None. A request is always taken when nothing is in the works, however long."""
        if not self.frames:
            return None
        if self.frames + count > self.max_frames:
            return (
                f"server busy: {self.frames} frames in flight, {count} more would pass "
                f"the limit of {self.max_frames}; retry later"
            )
        wait = self.expected_wait_s()
        if wait > max_wait_s:
            return too_long(wait, max_wait_s, f"{self.frames} frames ahead at {self.rate.frames_per_s:.1f} frames/s")
        return None

    def start(self, count: int, now: float) -> None:
        self.rate.busy(now)
        self.frames += count

    def finish(self, count: int, now: float, made: bool) -> None:
        """`made`: the frames were made (a failed request's time says nothing of the rate)."""
        self.frames -= count
        if made:
            self.rate.made(count, now, still_busy=self.frames > 0)
        elif not self.frames:
            self.rate.idle()


def too_long(wait_s: float, max_wait_s: float, why: str) -> str:
    return (
        f"server busy: expected wait {wait_s:.1f} s ({why}) is over what is left of this request's "
        f"bound ({max(max_wait_s, 0.0):.1f} s, MAX_WAIT_MS); retry later or on another replica"
    )


def board_path(server_pid: int, key: bytes) -> Path:
    """The board of the server whose process is `server_pid`: named under the server's secret
    (ticket.secret), so that no other local user can know the name, let alone take it first."""
    tag = hmac.new(key, f"admission board {server_pid}".encode(), hashlib.sha256).hexdigest()[:32]
    return BOARD_DIRECTORY / f"lipsync_admission_{tag}"


class Board:
    """The expected wait, published by face_generator for request_validator, another process of
    the same server, to refuse a request before its audio is processed: 8 bytes in shared memory,
    named after the server's process (the parent of every model process) and its secret. The
    writer creates it exclusively (never following a link), or, after a reload of face_generator,
    takes it only if it is still this user's own regular file; the reader maps it read-only. The
    launcher removes it when the server has exited."""

    def __init__(self, writer: bool):
        self.path = board_path(os.getppid(), ticket.secret())
        self._map: mmap.mmap | None = None
        self.writer = writer
        if writer:
            self._create()
            self.publish(0.0)

    def _create(self) -> None:
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:  # this server's, from before face_generator was reloaded
            descriptor = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
            found = os.fstat(descriptor)
            if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
                os.close(descriptor)
                raise PermissionError(f"{self.path} is not this server's admission board") from None
        try:
            os.ftruncate(descriptor, SIZE)
            self._map = mmap.mmap(descriptor, SIZE)
        finally:
            os.close(descriptor)

    def publish(self, wait_s: float) -> None:
        if self.writer and self._map is not None:
            struct.pack_into("d", self._map, 0, wait_s)

    def expected_wait_s(self) -> float:
        """The wait as of face_generator's last start or finish of a request; 0 before it starts.
        It is not aged: the frames of requests between this check and face_generator (in the
        audio steps) are not in it, and a refusal here costs no audio processing, while one at
        face_generator comes after it (the comparison: perf/README.md, issue 16)."""
        if self._map is None and not self._open():
            return 0.0
        return struct.unpack_from("d", self._map, 0)[0] if self._map is not None else 0.0

    def close(self) -> None:
        """Publishes no wait (this model is going) and unmaps."""
        self.publish(0.0)
        if self._map is not None:
            self._map.close()
            self._map = None

    def _open(self) -> bool:
        """The reader's read-only map, once the writer has made the board."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # not made yet
            return False
        try:
            self._map = mmap.mmap(descriptor, SIZE, prot=mmap.PROT_READ)
            return True
        except (OSError, ValueError):  # not yet sized by the writer
            return False
        finally:
            os.close(descriptor)
