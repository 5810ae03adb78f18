"""The one interface every accounting-package adapter implements.

An adapter knows how to log in (``validate``), which streams it offers
(``streams``), how to read one stream page by page from a cursor (``read``)
and how to map its source rows to canonical records (``map``). Cursors are
opaque strings (JSON here) that the sync engine stores after each page.

Adding a package (Exact Online, Moneybird, e-Boekhouden, Twinfield, Yuki)
means writing one module in this package with one ``Adapter`` subclass
decorated with ``@register('name')``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import LinkError, TransientError  # noqa: F401  (re-export)

STREAMS = ('debtors', 'open_items', 'payments')

ADAPTERS: dict[str, type['Adapter']] = {}


def register(name):
    def deco(cls):
        cls.name = name
        ADAPTERS[name] = cls
        return cls
    return deco


@dataclass
class Page:
    """One page read from a stream.

    ``records`` are source rows (whatever the package returned, already
    parsed); ``next_cursor`` is the cursor to store once this page has been
    imported: reading again from it continues after this page.
    """
    records: list
    next_cursor: str | None
    info: dict = field(default_factory=dict)


class Adapter:
    """Base class. Subclasses take their settings as keyword arguments."""

    name = 'base'
    #: settings that are secrets (never logged, registered with logsafe)
    secret_settings: tuple[str, ...] = ()
    #: called with {setting: new value} when the package rotates a
    #: credential (Exact Online's refresh token: the old one stops working
    #: the moment a new one is issued). The caller must have persisted the
    #: values when it returns; the adapter uses the new credential only
    #: after that, so a crash cannot leave a stored credential that no
    #: longer works while the working one is gone.
    credentials_saver = None

    def __init__(self, **settings):
        from .. import logsafe
        self.settings = settings
        logsafe.install()
        logsafe.register(*(settings.get(k) for k in self.secret_settings))

    # -- the interface -------------------------------------------------
    def validate(self) -> None:
        """Make a real login/token call; raise LinkError saying what is
        wrong (unknown environment code, wrong key, unreachable)."""
        raise NotImplementedError

    def streams(self) -> tuple[str, ...]:
        return STREAMS

    def read(self, stream: str, cursor: str | None) -> Iterator[Page]:
        """Yield pages of source rows starting at ``cursor`` (None: from the
        beginning, i.e. a first full sync)."""
        raise NotImplementedError

    def map(self, stream: str, records: list) -> list:
        """Map source rows of ``stream`` to canonical records."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def rotate_credentials(self, **values) -> None:
        "Persist rotated credentials (see credentials_saver) and keep them."
        from .. import logsafe
        logsafe.register(*(v for v in values.values()
                           if isinstance(v, str)))
        if self.credentials_saver is not None:
            self.credentials_saver(dict(values))
        self.settings.update(values)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        public = {k: v for k, v in self.settings.items()
                  if k not in self.secret_settings}
        return f'<{type(self).__name__} {public}>'


def load_cursor(cursor: str | None) -> dict:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except ValueError:
        return {'since': cursor}
    return value if isinstance(value, dict) else {'since': value}


def dump_cursor(**values) -> str:
    return json.dumps({k: v for k, v in values.items() if v is not None},
                      sort_keys=True)


def get_adapter(name: str, **settings) -> Adapter:
    import importlib
    if name not in ADAPTERS and name.isidentifier():
        try:  # adapters live in payt_hub/adapters/<name>.py
            importlib.import_module(f'{__package__}.{name}')
        except ModuleNotFoundError:
            pass
    try:
        cls = ADAPTERS[name]
    except KeyError:
        raise LinkError(f'unknown adapter {name!r}; known: '
                        f'{", ".join(sorted(ADAPTERS))}', 'rejected') from None
    return cls(**settings)
