"""The one interface every accounting-package adapter implements.

An adapter knows how to log in (``validate``), which streams it offers
(``streams``), how to list one stream page by page from a cursor
(``read``), how to fetch records by id (``fetch_items``,
``fetch_debtors``) and how to map its source rows to canonical records
(``map``). The sync engine (``sync.py``) does the rest: it compares with
the ERP, closes what the package no longer has and stores cursors.

The contract a new package (Exact Online, Moneybird, ...) must keep:

* ``read(stream, cursor)`` lists the *whole* stream (``debtors``: every
  debtor; ``open_items``: every item whose open amount is not zero), in
  ascending ``order_key`` of the external id, with paging that cannot skip
  a record when others are added, changed or deleted meanwhile: keyset
  paging ("id greater than the last one seen"), a server-side
  continuation link over a stable order, or anchored offsets (see the
  SnelStart adapter). Each ``Page`` says which key span it covers
  completely (``after`` < key <= ``upto``, or to the end when ``last``):
  every record of the stream in that span, as the package had it when the
  page was read. The sync closes ERP open items of that span that the page
  does not list, after asking ``fetch_items`` about them.
* ``next_cursor`` of a page is where the listing continues after it (an
  opaque string, JSON by convention); the last page's is ``None``: the next
  sync starts a new full listing. The engine stores the cursor in the same
  ERP transaction as the page's data.
* ``fetch_items(ids)`` returns the package's current rows of those ids
  (the same shape ``map('open_items', ...)`` takes), leaving out ids the
  package no longer has: only those are closed. ``fetch_debtors(ids)``
  likewise for debtors (an item may name a debtor added after the debtors
  pass).
* ``map('open_items', rows)`` returns ``OpenItem`` records, with amounts
  in the item's own currency, and ``Payment`` records for what was paid
  on them (one cumulative payment per item, external id ``<item>:paid``).
  Credit notes the package links to an invoice are netted into that
  invoice and yield no item of their own; unlinked ones are items with a
  negative amount, described as credit notes.
* ``order_key(external_id)`` gives the sort key the package uses for its
  listing order (default: the id itself).
* ``validate`` makes a real login and raises ``LinkError`` (wrong
  credentials, unknown environment: not retried) or ``TransientError``
  (network, 5xx, 429: retried by the caller).

Adding a package means writing one module in this package with one
``Adapter`` subclass decorated with ``@register('name')``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Iterator

from ..errors import LinkError, TransientError  # noqa: F401  (re-export)

STREAMS = ('debtors', 'open_items')

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
    imported: reading again from it continues after this page (``None`` on
    the last page). The page covers every record of the stream whose key
    is greater than ``after`` (``None``: from the start) and at most
    ``upto`` (the last key on the page), or, when ``last``, every record
    from ``after`` to the end. ``after``/``upto`` are external ids.
    """
    records: list
    next_cursor: str | None
    info: dict = field(default_factory=dict)
    after: str | None = None
    upto: str | None = None
    last: bool = False


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
        """Yield the pages of the whole stream after ``cursor`` (None: from
        the beginning), in ``order_key`` order; see the module docstring."""
        raise NotImplementedError

    def map(self, stream: str, records: list) -> list:
        """Map source rows of ``stream`` to canonical records."""
        raise NotImplementedError

    def fetch_items(self, ids: list[str]) -> list:
        """Current source rows of these open-item ids; ids the package no
        longer has are left out (and only those get closed)."""
        raise NotImplementedError

    def fetch_debtors(self, ids: list[str]) -> list:
        """Current source rows of these debtor ids (missing ones left
        out)."""
        raise NotImplementedError

    def order_key(self, external_id: str):
        """Sort key of an external id in the package's listing order."""
        return external_id

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
