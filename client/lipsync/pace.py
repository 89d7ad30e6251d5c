"""How fast the server renders for the sessions of one process on one server and avatar, learned
from their own requests: a request's latency as a fixed part plus its frames at a rate, fitted by
least squares to the latest requests (of several sizes: a reply's first are small). A session
plans by it when a reply can start without a late frame."""

import threading
from collections import deque

import numpy as np

WINDOW = 24  # the latest requests: a server that slows down is followed within seconds


class Pace:
    def __init__(self) -> None:
        self.frames_per_s: float | None = None
        self.overhead_s = 0.0  # a request's latency beyond its frames at frames_per_s
        self._samples: deque[tuple[int, float]] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()  # sessions on several event loops' threads share it

    def done(self, frames: int, seconds: float) -> None:
        """A request of `frames` answered `seconds` after it was sent (failed ones say nothing)."""
        with self._lock:
            self._samples.append((frames, seconds))
            sizes, latencies = (np.array(column, np.float64) for column in zip(*self._samples))
            if np.unique(sizes).size > 1:
                per_frame, overhead = np.polyfit(sizes, latencies, 1)
                if per_frame > 0 and overhead >= 0:
                    self.frames_per_s, self.overhead_s = 1.0 / per_frame, float(overhead)
                    return
            self.frames_per_s, self.overhead_s = float(sizes.sum() / latencies.sum()), 0.0

    def latency_s(self, frames: int) -> float | None:
        """A request of `frames`' expected latency; None before anything was measured."""
        if self.frames_per_s is None:
            return None
        return self.overhead_s + frames / self.frames_per_s
