"""A stage's progress on the terminal: done of total, the rate, and the time left at that rate
(one line rewritten in place on a terminal; a line every tenth otherwise, for logs)."""

import sys
import time


class Progress:
    def __init__(self, stage: str, total: int, unit: str, out=sys.stderr):
        self.stage, self.total, self.unit, self.out = stage, max(1, total), unit, out
        self.started = time.monotonic()
        self.shown_tenth = -1
        self.live = out.isatty()
        self._first: tuple[int, float] | None = None  # (done, when) at the first update

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        self._say_how_long(done, now)
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else float("inf")
        line = f"{self.stage}: {done}/{self.total} {self.unit}, {rate:.1f}/s, {_duration(left)} left"
        line += f" ({note})" if note else ""
        if self.live:
            self.out.write("\r" + line.ljust(100))
            self.out.flush()
        elif done * 10 // self.total > self.shown_tenth:
            self.shown_tenth = done * 10 // self.total
            print(line, file=self.out, flush=True)

    def _say_how_long(self, done: int, now: float) -> None:
        """Once, up front: how long the whole stage takes at the pace of its first measured unit
        after the first (the first carries the warm-up; a resumed stage starts past zero)."""
        if self._first is None:
            self._first = (done, now)
            return
        first_done, first_at = self._first
        if first_done < 0 or done <= first_done:
            return
        per_unit = (now - first_at) / (done - first_done)
        print(
            f"{self.stage}: {self.total - first_done} {self.unit} take about "
            f"{_duration((self.total - first_done) * per_unit)} at {per_unit:.2f} s each",
            file=self.out,
            flush=True,
        )
        self._first = (-1, now)

    def finish(self, summary: str) -> float:
        """Ends the stage's line with a summary; returns the stage's seconds."""
        seconds = time.monotonic() - self.started
        line = f"{self.stage}: {summary} ({_duration(seconds)})"
        print(("\r" + line.ljust(100)) if self.live else line, file=self.out, flush=True)
        return seconds


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
