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

    def update(self, done: int, note: str = "") -> None:
        elapsed = time.monotonic() - self.started
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
