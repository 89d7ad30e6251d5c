"""Waiting for something to come true, and backing off between retries, on tenacity: one home for
the polling loops of the client, the launcher, the benchmarks and the tests."""

from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


def until(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.1) -> T:
    """condition()'s first truthy value, asked every `interval_s` seconds; TimeoutError saying
    `what` was awaited if none comes within `timeout_s`."""
    polling = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda value: not value),
        wait=tenacity.wait_fixed(interval_s),
        stop=tenacity.stop_after_delay(timeout_s),
    )
    try:
        return polling(condition)
    except tenacity.RetryError:
        raise TimeoutError(f"{what}: not within {timeout_s:g} s") from None


def jittered_backoff(first_s: float, most_s: float) -> tenacity.wait.wait_base:
    """Waits drawn at random up to first_s, 2 first_s, 4 first_s ... most_s ("full jitter"): clients
    that failed together (a replica died under all of them) retry spread out, not in lockstep."""
    return tenacity.wait_random_exponential(multiplier=first_s, max=most_s)
