"""Error types shared by adapters, the sync engine and the Celery task."""


class HubError(Exception):
    """Base class of every error raised by payt_hub."""


class LinkError(HubError):
    """The link to the accounting package is not usable as configured.

    ``reason`` is a short machine-readable code: ``unknown_environment``,
    ``wrong_partner_key``, ``wrong_client_key``, ``wrong_subscription_key``,
    ``unreachable``, ``rejected``. The message says in words what is wrong
    (never the secret itself).
    """

    def __init__(self, message, reason='rejected'):
        super().__init__(message)
        self.reason = reason


class TransientError(HubError):
    """Network error, 5xx, 429 or timeout: retrying later may succeed."""

    def __init__(self, message, retry_after=None):
        super().__init__(message)
        self.retry_after = retry_after


class Unreachable(LinkError, TransientError):
    """The package did not answer (network error, timeout), also while a
    link is being checked.

    A LinkError so that activation names it in words ("cannot be reached at
    ..."), and a TransientError so that a scheduled sync is retried with
    back-off instead of being booked as a configuration error.
    """

    def __init__(self, message, retry_after=None):
        LinkError.__init__(self, message, 'unreachable')
        self.retry_after = retry_after


def is_transient(exc) -> bool:
    "Worth retrying later: network errors, timeouts, 5xx, 429."
    return isinstance(exc, TransientError)


class SourceDataError(HubError):
    """The package answered something we refuse to use (malformed, hostile)."""
