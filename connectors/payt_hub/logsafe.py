"""Keep credentials out of logs.

Adapters register every secret they hold (partner keys, environment codes,
client keys, subscription keys, tokens, session ids) with ``register``. A
filter on the loggers that could echo them (ours, zeep's transport which
dumps SOAP envelopes at DEBUG, httpx/httpcore, urllib3) replaces them by
``***`` before any handler sees the record.
"""
import logging
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

LOGGERS = ('payt_hub', 'zeep', 'zeep.transports', 'zeep.wsdl',
           'zeep.xsd', 'httpx', 'httpcore', 'urllib3',
           'urllib3.connectionpool', 'celery', 'celery.app.trace')


def register(*values):
    with _lock:
        for value in values:
            if value and len(str(value)) >= 4:
                _secrets.add(str(value))


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, '***')
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
    # every handler of the root logger too: records of any logger (trytond's
    # SQL debug log included) pass through them
    for handler in logging.getLogger().handlers:
        if _filter not in handler.filters:
            handler.addFilter(_filter)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
    # child loggers of payt_hub: filters do not propagate, add on each
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(('payt_hub.', 'zeep.', 'httpcore.')):
            logger = logging.getLogger(name)
            if _filter not in logger.filters:
                logger.addFilter(_filter)
