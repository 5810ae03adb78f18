"""Retry policy shared by adapters: tenacity, exponential backoff, honouring
Retry-After carried by TransientError."""
import logging

import tenacity

from .errors import TransientError

log = logging.getLogger(__name__)


class _Wait(tenacity.wait.wait_base):
    def __init__(self, base, maximum):
        self.exp = tenacity.wait_exponential(multiplier=base, max=maximum)
        self.maximum = maximum

    def __call__(self, retry_state):
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, 'retry_after', None)
        if retry_after is not None:
            return min(float(retry_after), self.maximum)
        return self.exp(retry_state)


def _log(retry_state):
    exc = retry_state.outcome.exception()
    log.warning('attempt %d failed (%s), retrying',
                retry_state.attempt_number, exc)


def retrying(attempts=5, base_wait=0.5, max_wait=60.0):
    """A tenacity.Retrying for TransientError; re-raises the last error."""
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(attempts),
        wait=_Wait(base_wait, max_wait),
        before_sleep=_log,
        reraise=True)


# -- the scheduled sync (Celery) -------------------------------------------
# An adapter retries a call a few times within seconds (above); when the
# package stays down the whole sync fails with a TransientError and Celery
# tries it again later, spread over hours: an outage of a morning must not
# cost a day's import, and a configuration error (LinkError) is never
# retried because no amount of waiting fixes it.
TASK_RETRY_DELAYS = (60, 300, 900, 1800, 3600, 3600, 7200, 7200)  # ~7 h


def task_countdown(retries: int, retry_after=None, jitter=0.1,
                   rng=None) -> float:
    """Seconds before retry number ``retries + 1`` of a sync task: the
    schedule above, at least the package's Retry-After, plus up to 10 %
    jitter so that links failing together do not return together."""
    import random
    delay = TASK_RETRY_DELAYS[min(retries, len(TASK_RETRY_DELAYS) - 1)]
    if retry_after:
        delay = max(delay, float(retry_after))
    return delay * (1 + jitter * (rng or random).random())


#: seconds per HTTP request of a scheduled sync: a slow package (40 s per
#: reply was seen) is waited for instead of timed out three times over;
#: PAYT_HUB_TIMEOUT overrides it
READ_TIMEOUT = 120.0


def sync_settings(settings: dict) -> dict:
    """Adapter settings of a scheduled sync: generous per-request timeouts
    and few quick in-adapter attempts (the long waits are Celery's)."""
    import os
    out = dict(settings)
    out.setdefault('timeout', float(os.environ.get('PAYT_HUB_TIMEOUT',
                                                   READ_TIMEOUT)))
    out.setdefault('attempts', 3)
    return out
