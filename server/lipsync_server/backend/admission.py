"""Admission by deadline: a request is taken only if the frames already in the works and its own
will be done by the time its caller needs them (its MAX_WAIT_MS from when it arrived), at the rate
this server is measured to make frames.

Frames are served first come, first served (the UNet's batcher takes queued chunks in order), so
a request is done when the frames ahead of it and its own are made: their count over the service
rate. Counting its own frames is what lets a live session's pipelined segments, each due when the
one before it has played, all be taken, while a request that would finish too late to be shown is
refused at once: it costs nothing, and the client can try another replica while there is time.
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
BOARD = struct.Struct("dd")  # frames in the works, the service rate (frames/s; 0: not measured)


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
        return work_s(self.frames, self.rate.frames_per_s)

    def refusal(self, count: int, max_wait_s: float) -> str | None:
        """Why a request of `count` frames that must be done within `max_wait_s` is not taken
        now, or None. A request is always taken when nothing is in the works, however long."""
        if not self.frames:
            return None
        if self.frames + count > self.max_frames:
            return (
                f"server busy: {self.frames} frames in flight, {count} more would pass "
                f"the limit of {self.max_frames}; retry later"
            )
        return too_late(self.frames, count, self.rate.frames_per_s, max_wait_s)

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


def work_s(frames: float, frames_per_s: float | None) -> float:
    """How long `frames` take at the measured rate (0 before any rate is measured)."""
    return frames / frames_per_s if frames and frames_per_s else 0.0


def bound_ms(given_ms: int | None, queueing_ms: int, count: int, frames_per_s: float | None) -> int:
    """A request's bound: MAX_WAIT_MS as given, or by default `queueing_ms` of waiting and then
    its own frames' time (how long a request without a deadline of its own may take)."""
    return given_ms if given_ms is not None else queueing_ms + round(work_s(count, frames_per_s) * 1000)


def too_late(ahead: float, count: int, frames_per_s: float | None, max_wait_s: float) -> str | None:
    """Why a request of `count` frames behind `ahead` frames would not be done within
    `max_wait_s`, or None."""
    done_s = work_s(ahead + count, frames_per_s)
    if done_s <= max_wait_s:
        return None
    return (
        f"server busy: this request's {count} frames would be done in {done_s:.2f} s ({ahead:.0f} frames ahead "
        f"at {frames_per_s or 0:.1f} frames/s), past what is left of its bound ({max(max_wait_s, 0.0):.2f} s, "
        "MAX_WAIT_MS); retry later or on another replica"
    )


def board_path(server_pid: int, key: bytes) -> Path:
    """The board of the server whose process is `server_pid`: named under the server's secret
    (ticket.secret), so that no other local user can know the name, let alone take it first."""
    tag = hmac.new(key, f"admission board {server_pid}".encode(), hashlib.sha256).hexdigest()[:32]
    return BOARD_DIRECTORY / f"lipsync_admission_{tag}"


class Board:
    """The frames in the works and the service rate, published by face_generator for request_validator,
    another process of the same server, to refuse a request before its audio is processed and to
    give a request without MAX_WAIT_MS its default bound: 16 bytes in shared memory,
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
            self.publish(0, None)

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
            os.ftruncate(descriptor, BOARD.size)
            self._map = mmap.mmap(descriptor, BOARD.size)
        finally:
            os.close(descriptor)

    def publish(self, frames: int, frames_per_s: float | None) -> None:
        if self.writer and self._map is not None:
            BOARD.pack_into(self._map, 0, frames, frames_per_s or 0.0)

    def read(self) -> tuple[float, float | None]:
        """(frames in the works, frames/s or None) as of face_generator's last start or finish of
        a request; none before it starts. It is not aged: the frames of requests between this
        check and face_generator (in the audio steps) are not in it, and a refusal here costs no
        audio processing, while one at face_generator comes after it."""
        if self._map is None and not self._open():
            return 0.0, None
        frames, frames_per_s = BOARD.unpack_from(self._map, 0) if self._map is not None else (0.0, 0.0)
        return frames, frames_per_s or None

    def close(self) -> None:
        """Publishes no work (this model is going) and unmaps."""
        self.publish(0, None)
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
            self._map = mmap.mmap(descriptor, BOARD.size, prot=mmap.PROT_READ)
            return True
        except (OSError, ValueError):  # not yet sized by the writer
            return False
        finally:
            os.close(descriptor)
