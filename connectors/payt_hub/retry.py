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
