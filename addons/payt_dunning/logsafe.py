# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Keep tokens and secrets out of the server's logs.

Two places of trytond write what a caller sent:
- the request log (`trytond.wsgi`, and werkzeug's access log of the
  built-in server) writes every URL: a portal link's token is in its path,
  a provider's callback secret in its query;
- the RPC log (`trytond.protocols.dispatcher`) writes the arguments of
  every call, at INFO shortened to 17 characters per string, at DEBUG in
  full; it hides the values of dictionary keys containing "password",
  "token" or "secret" only, so a Mollie API key written as
  {'mollie_api_key': ...} showed its first 17 characters.

`install` adds our secret field names to trytond's list of sensitive keys
and a filter to those loggers (and the root handlers) that replaces portal
tokens and secret query values by ***.
"""
import logging
import re

from trytond.tools import logging as trytond_logging

# Parts of field names whose values are secrets (see trytond.tools.logging).
SENSITIVE_KEYS = {'api_key', 'partner_key', 'subscription_key',
    'environment_code', '_masked'}
PATTERNS = [
    (re.compile(r'(/payt/portal/)[A-Za-z0-9_-]+'), r'\1***'),
    (re.compile(r'([?&;](?:token|secret|signature)=)[^&;\s\'"]*',
            re.IGNORECASE), r'\1***'),
    ]
LOGGERS = ('trytond.wsgi', 'trytond.protocols.dispatcher',
    'trytond.protocols.wrappers', 'werkzeug', 'trytond.modules.payt_dunning')


def redact(text):
    "The text without portal tokens and secret query values."
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactFilter(logging.Filter):
    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_filter = RedactFilter()


def install():
    "Idempotent: called when the module loads."
    trytond_logging._SENSITIVE_KEYS.update(SENSITIVE_KEYS)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    for target in loggers + list(logging.getLogger().handlers):
        if _filter not in target.filters:
            target.addFilter(_filter)
