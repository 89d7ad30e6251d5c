"""How fast the server renders for one session, learned from its own requests: frames per second
of the time it has requests in flight, and a request's latency as a fixed part plus its frames
at that rate. A session plans by it when a reply can start without a late frame."""

import math

SMOOTHING_S = 3.0  # of busy time: the rate follows a server that slows down within seconds


class Pace:
    def __init__(self) -> None:
        self.frames_per_s: float | None = None
        self.overhead_s = 0.0  # a request's latency beyond its frames at frames_per_s
        self._in_flight = 0
        self._busy_since: float | None = None

    def sent(self, now: float) -> None:
        if self._in_flight == 0:
            self._busy_since = now
        self._in_flight += 1

    def done(self, frames: int, sent: float, now: float) -> None:
        """A request of `frames` sent at `sent` answered at `now` (failed ones: lost())."""
        self._in_flight -= 1
        assert self._busy_since is not None
        busy = max(now - self._busy_since, 1e-6)
        sample = frames / busy
        weight = 1.0 if self.frames_per_s is None else 1.0 - math.exp(-busy / SMOOTHING_S)
        self.frames_per_s = (
            sample if self.frames_per_s is None else self.frames_per_s + weight * (sample - self.frames_per_s)
        )
        overhead = max(0.0, (now - sent) - frames / self.frames_per_s)
        self.overhead_s += 0.3 * (overhead - self.overhead_s) if self.overhead_s else overhead
        self._busy_since = now if self._in_flight else None

    def lost(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._busy_since = None

    def latency_s(self, frames: int) -> float | None:
        """A request of `frames`' expected latency; None before anything was measured."""
        if self.frames_per_s is None:
            return None
        return self.overhead_s + frames / self.frames_per_s
