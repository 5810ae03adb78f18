"""Keep credentials out of logs.

Adapters register every secret they hold (partner keys, environment codes,
client keys, subscription keys, tokens, session ids) with ``register``. A
filter on the loggers that could echo them (ours, zeep's transport which
dumps SOAP envelopes at DEBUG, httpx/httpcore, urllib3) replaces them by
``***`` before any handler sees the record.

Only whole tokens are replaced: a secret counts where it is not glued to
other letters or digits. The test environment code ``00000`` must not turn
``4.930338591000009s`` into ``4.930338591***9s``: a number that happens to
contain a code is not the code, and a half-replaced value tells a reader
more than it hides.
"""
import logging
import re
import threading

_lock = threading.Lock()
_secrets: set[str] = set()

LOGGERS = ('payt_hub', 'zeep', 'zeep.transports', 'zeep.wsdl',
           'zeep.xsd', 'httpx', 'httpcore', 'urllib3',
           'urllib3.connectionpool', 'celery', 'celery.app.trace')


_pattern: re.Pattern | None = None


def register(*values):
    global _pattern
    with _lock:
        for value in values:
            if value and len(str(value)) >= 4:
                _secrets.add(str(value))
        _pattern = token_pattern(_secrets)


def token_pattern(secrets) -> re.Pattern | None:
    """One regex matching any of the secrets as a whole token (longest
    first, so a secret containing another is replaced whole)."""
    if not secrets:
        return None
    alternatives = '|'.join(re.escape(s) for s in
                            sorted(secrets, key=len, reverse=True))
    return re.compile(rf'(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])')


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is None:
        return text
    return pattern.sub('***', text)


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
