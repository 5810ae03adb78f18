# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""What every provider shares: the message, the receipt, the status report,
the error, the settings of section [payt_channels] and our callback URL."""
import dataclasses
import hmac
import json
import urllib.error
import urllib.parse
import urllib.request

from trytond import config

SECTION = 'payt_channels'


def setting(name, default=None):
    return config.get(SECTION, name, default=default)


def secret_matches(given, name):
    """Whether `given` is the shared secret of setting `name`; never when
    the secret is unset (no anonymous acceptance)."""
    expected = setting(name)
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())



@dataclasses.dataclass
class Outgoing:
    "One message for a provider."
    key: str                    # our idempotency key, also the reference
    channel: str                # email, sms, call or letter
    to: str = ''                # E.164 for sms and call
    text: str = ''
    language: str = 'nl'
    pdf: bytes = b''            # letters
    recipient: dict = dataclasses.field(default_factory=dict)
    message: object = None      # email: the EmailMessage


@dataclasses.dataclass
class Receipt:
    provider_id: str
    state: str = 'queued'       # queued or sent


@dataclasses.dataclass
class StatusReport:
    "What a provider callback says about one message."
    state: str                  # queued, sent, delivered, failed, returned
    key: str = None
    provider_id: str = None
    error: str = None


class ProviderError(Exception):
    """The provider refused the message; permanent unless `retry`.
    `ambiguous`: no answer came, the provider may have the message."""

    def __init__(self, message, retry=False, ambiguous=False):
        super().__init__(message)
        self.retry = retry or ambiguous
        self.ambiguous = ambiguous


@dataclasses.dataclass
class Job:
    "One message for a provider and the communications it covers."
    ids: list
    provider: str
    what: str
    outgoing: Outgoing



class Provider:
    """The interface of every channel provider.

    `send` hands one message over and returns a Receipt, or raises
    ProviderError; `parse_callback` turns a callback's body into
    StatusReports. `idempotent` says whether the provider answers a repeated
    key with the original message instead of sending it again."""
    name = None
    idempotent = False
    # Whether it reports status to our callback route (verify, parse).
    reports = False

    def send(self, message):
        raise NotImplementedError

    @classmethod
    def close(cls):
        "Let go of what `send` kept open (a connection), if anything."

    def verify(self, body, headers, query):
        "Whether the callback comes from this provider (its own scheme)."
        raise NotImplementedError

    def parse_callback(self, body, headers, query):
        raise NotImplementedError

    @staticmethod
    def _post(url, payload, headers=None, timeout=30):
        data = json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method='POST',
            headers=dict({'Content-Type': 'application/json',
                    'Accept': 'application/json'}, **(headers or {})))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b'{}')
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                body = json.loads(body)
            except ValueError:
                body = {'details': body.decode(errors='replace')}
            return error.code, body
        except (urllib.error.URLError, OSError) as error:
            refused = isinstance(getattr(error, 'reason', error),
                ConnectionRefusedError)
            raise ProviderError("%s unreachable: %s" % (url, error),
                retry=True, ambiguous=not refused)


def callback_url(provider, key=None, secret=None):
    "Our callback route for a provider; `secret`: the setting to carry."
    base = setting('callback_url')
    if not base:
        return None
    query = {}
    if secret:
        query['token'] = setting(secret, '')
    if key:
        query['key'] = key
    url = '%s/%s' % (base.rstrip('/'), provider)
    return '%s?%s' % (url, urllib.parse.urlencode(query)) if query else url
