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


class SourceDataError(HubError):
    """The package answered something we refuse to use (malformed, hostile)."""
