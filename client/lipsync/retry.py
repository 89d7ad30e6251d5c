"""Which failed requests are worth sending again, and how a stream's segments are retried: each
carries its audio context, so a retry, on this server or behind a load balancer on another,
gives the same frames."""

from collections.abc import Callable

import tenacity
from tritonclient.utils import InferenceServerException

from lipsync_protocol import waiting
from lipsync_protocol.ensemble import ENSEMBLE, RAW_ENSEMBLE


def passing(error: BaseException) -> bool:
    """Whether a failed request may succeed if sent again: the server was unreachable, busy
    (UNAVAILABLE), too slow (DEADLINE_EXCEEDED), or not serving the pipeline at this moment
    (stopping or starting: the ensemble is not loaded)."""
    if isinstance(error, ConnectionError):
        return True
    if not isinstance(error, InferenceServerException):
        return False
    status, message = str(error.status() or ""), error.message() or ""
    if any(code in status for code in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "503", "502", "504")):
        return True
    if message.startswith("in ensemble"):  # a step's own answer (an avatar version not loaded): final
        return False
    pipeline_gone = "unknown model" in message or "not ready" in message
    return pipeline_gone and any(f"'{ensemble}'" in message for ensemble in (ENSEMBLE, RAW_ENSEMBLE))


def segment_retrying(
    retry_for_s: float, sleep: Callable[[float], None], counted: Callable[[tenacity.RetryCallState], None]
) -> tenacity.Retrying:
    """Retries while a segment fails for a passing reason, with jittered backoff, for at most
    `retry_for_s`; `sleep` waits (and may raise, cancelled), `counted` hears of each retry."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(passing),
        wait=waiting.jittered_backoff(0.25, 4.0),
        stop=tenacity.stop_before_delay(retry_for_s),
        sleep=sleep,
        before_sleep=counted,
        reraise=True,
    )
