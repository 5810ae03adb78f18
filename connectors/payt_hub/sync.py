"""The sync engine: the package's listing, page by page, into the ERP, so
that after every sync the ERP's open items of the administration equal the
package's (ids, open amounts, currencies).

How (see docs/CONNECTORS-HUB.md, "Convergence"):

* Every sync is a full **reconciliation pass**: ``debtors`` then
  ``open_items`` are listed completely in a stable key order (keyset
  paging, see ``adapters/base.py``), so a record added, paid or deleted
  elsewhere in the listing cannot make the pass skip an untouched one.
* Each page says which key span it covers. ERP open items in that span
  that the page does not list are *candidates* for closing: the adapter
  fetches them one by one (``fetch_items``); what the package still has is
  imported as it is now (paid: open amount 0), what it no longer has is
  sent in ``closed_items``, an explicit list of ids; nothing is ever closed
  by omission or by an empty list, and a page that was not read is never a
  reason to close anything.
* The cursor of a stream (the key after which the pass continues) travels
  in the same ``import_batch`` call as the page it covers, so the ERP
  stores both in one transaction: a hub killed at any point resumes after
  the last page the ERP accepted, and a page is never half imported.
* The ERP's open items (the ``COMPARED`` fields) and payment amounts are
  read once; a pass sends only what differs. A pass that sent anything is
  followed by another (things changed behind it while it ran), up to
  ``MAX_ROUNDS`` passes in all; the result says whether the last one found
  nothing to send (``converged``).
* Evidence: counts and open sums per currency of both sides, as seen at
  the end of the last pass (``SyncResult.evidence``).
"""
from __future__ import annotations

import bisect
import copy
import logging
import sys
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from .adapters.base import Adapter
from .canonical import Debtor, OpenItem, Payment, item_dict, to_batch

log = logging.getLogger(__name__)

SUMMARY_KEYS = ('debtors_created', 'debtors_updated', 'items_created',
                'items_updated', 'items_closed', 'payments_created')
#: passes of open_items per sync at most (the first plus verifications)
MAX_ROUNDS = 4
#: item fields compared with the ERP: a record equal on these is not sent
COMPARED = ('debtor', 'number', 'description', 'invoice_date', 'due_date',
            'currency', 'amount', 'open_amount')


class Sink:
    """Where batches go; the ERP implements the same calls."""

    def import_batch(self, batch: dict, cursors: dict | None = None) -> dict:
        """Import one IMPORT-BATCH.md batch and store ``cursors``
        ({stream: value}) in the same transaction; return the summary.
        Must be idempotent. Raise to refuse the batch (nothing stored)."""
        raise NotImplementedError

    def load_cursor(self, stream: str) -> str | None:
        raise NotImplementedError

    def open_state(self) -> dict[str, tuple[str, str | None]]:
        """{external id: (open amount, currency code)} of the
        administration's open items in the ERP now."""
        raise NotImplementedError

    def debtor_ids(self) -> set[str]:
        """External ids of the administration's debtors in the ERP."""
        raise NotImplementedError

    def open_records(self) -> dict[str, dict]:
        """{external id: item as IMPORT-BATCH.md spells it} of the open
        items in the ERP, for the fields in ``COMPARED``; lets a sync send
        only what changed. Default: open amount and currency only."""
        return {k: {'open_amount': v, 'currency': c}
                for k, (v, c) in self.open_state().items()}

    def payment_amounts(self) -> dict[str, str]:
        """{payment external id: amount} in the ERP (default: unknown, so
        payments are sent with their items)."""
        return {}


class SinkCrash(RuntimeError):
    """Raised by MemorySink(crash_after=k) to simulate a killed sync."""


class MemorySink(Sink):
    """In-memory ERP stand-in with the import_batch semantics of
    IMPORT-BATCH.md (validation of the whole batch first, upsert by
    external_id, open_amount 0 and closed_items close an item, payments
    idempotent by external_id, cursors stored with the batch).
    ``crash_after=k`` makes the (k+1)-th import raise SinkCrash before
    anything is stored, as if the process died mid-sync."""

    def __init__(self, crash_after=None):
        self.debtors: dict[str, dict] = {}
        self.items: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}
        self.cursors: dict[str, str | None] = {}
        self.batches: list[dict] = []
        self.crash_after = crash_after
        self.lock = threading.RLock()

    def _validate(self, batch):
        ids = {}
        for kind, required in (('debtors', ('name',)),
                               ('items', ('debtor', 'due_date', 'amount',
                                          'open_amount')),
                               ('payments', ('item', 'date', 'amount'))):
            seen = set()
            for rec in batch.get(kind, []):
                ext = rec.get('external_id')
                if not ext or len(ext) > 64:
                    raise ValueError(f'{kind}: bad external_id {ext!r}')
                if ext in seen:
                    raise ValueError(f'{kind}: duplicate {ext}')
                seen.add(ext)
                for key in required:
                    if rec.get(key) in (None, ''):
                        raise ValueError(f'{kind} {ext}: {key} missing')
                for key, value in rec.items():
                    if isinstance(value, float):
                        raise ValueError(f'{kind} {ext}: float {key}')
                    if key in ('amount', 'open_amount'):
                        Decimal(value)
                if len(rec.get('name') or '') > 200 or len(
                        rec.get('description') or '') > 1000:
                    raise ValueError(f'{kind} {ext}: string too long')
            ids[kind] = seen
        for rec in batch.get('items', []):
            if rec['debtor'] not in ids['debtors'] and \
                    rec['debtor'] not in self.debtors:
                raise ValueError(f'item {rec["external_id"]}: unknown '
                                 f'debtor {rec["debtor"]}')
        if batch.get('complete') or 'closed_items' in batch and \
                not batch['closed_items']:
            raise ValueError('closing by omission or by an empty list '
                             'is refused')

    def import_batch(self, batch, cursors=None):
        with self.lock:
            if self.crash_after is not None and \
                    len(self.batches) >= self.crash_after:
                raise SinkCrash('sink crashed (simulated)')
            self._validate(batch)
            batch = copy.deepcopy(batch)
            summary = dict.fromkeys(SUMMARY_KEYS, 0)
            for rec in batch.get('debtors', []):
                old = self.debtors.get(rec['external_id'])
                if old is None:
                    summary['debtors_created'] += 1
                elif old != rec:
                    summary['debtors_updated'] += 1
                self.debtors[rec['external_id']] = rec
            for rec in batch.get('items', []):
                old = self.items.get(rec['external_id'])
                closing = Decimal(rec['open_amount']) == 0
                if old is None:
                    summary['items_created'] += 1
                elif old != rec:
                    summary['items_updated'] += 1
                if closing and (old is None or
                                Decimal(old['open_amount']) != 0):
                    summary['items_closed'] += 1
                self.items[rec['external_id']] = rec
            for ext in batch.get('closed_items', []):
                if ext in self.items and \
                        Decimal(self.items[ext]['open_amount']) != 0:
                    self.items[ext] = dict(self.items[ext],
                                           open_amount='0.00')
                    summary['items_closed'] += 1
            for rec in batch.get('payments', []):
                if rec['external_id'] not in self.payments:
                    summary['payments_created'] += 1
                self.payments[rec['external_id']] = rec
            self.cursors.update(cursors or {})
            self.batches.append(batch)
            return summary

    def load_cursor(self, stream):
        return self.cursors.get(stream)

    def save_cursor(self, stream, value):
        self.import_batch({}, {stream: value})

    def open_state(self):
        with self.lock:
            return {k: (v['open_amount'], v.get('currency'))
                    for k, v in self.items.items()
                    if Decimal(v['open_amount']) != 0}

    def debtor_ids(self):
        return set(self.debtors)

    def open_records(self):
        with self.lock:
            return {k: {f: v.get(f) for f in COMPARED}
                    for k, v in self.items.items()
                    if Decimal(v['open_amount']) != 0}

    def payment_amounts(self):
        with self.lock:
            return {k: v['amount'] for k, v in self.payments.items()}

    def open_items(self):
        """{external_id: open_amount} of items not closed."""
        return {k: v for k, (v, _) in self.open_state().items()}


@dataclass
class SyncResult:
    pages: int = 0
    records: dict = field(default_factory=dict)
    summary: dict = field(default_factory=lambda: dict.fromkeys(
        SUMMARY_KEYS, 0))
    #: passes of open_items made, and whether the last one found nothing
    #: left to send (the ERP equal to the package as listed)
    rounds: int = 0
    converged: bool = False
    #: {'source': {'items': n, 'open': {currency: sum}}, 'erp': {...}}
    evidence: dict = field(default_factory=dict)


def _progress(stream, enabled):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    disable = not enabled if enabled is not None else not sys.stderr.isatty()
    return tqdm(desc=stream, unit=' records', disable=disable, leave=True,
                file=sys.stderr)


def _amount(value) -> str:
    return str(Decimal(value).quantize(Decimal('0.01')))


def totals(state: dict) -> dict:
    """{'items': n, 'open': {currency: sum}} of an open_state dict."""
    sums: dict[str, Decimal] = {}
    for open_amount, currency in state.values():
        key = currency or '-'
        sums[key] = sums.get(key, Decimal(0)) + Decimal(open_amount)
    return {'items': len(state),
            'open': {k: _amount(v) for k, v in sorted(sums.items())}}


class _Pass:
    """State of one sync against one sink: the ERP's open items as the
    sync knows them (kept up to date with every accepted batch) and the
    debtors it knows to exist there."""

    def __init__(self, adapter, sink, result, progress, batch_records):
        self.adapter = adapter
        self.sink = sink
        self.result = result
        self.progress = progress
        self.batch_records = batch_records
        self.erp_open = {k: (_amount(v), c)
                         for k, (v, c) in sink.open_state().items()}
        self.erp_debtors: set[str] = set(sink.debtor_ids())
        self.erp_records = sink.open_records()
        self.erp_payments = sink.payment_amounts()

    # -- sending ---------------------------------------------------------
    def send(self, stream, records, closed, cursor):
        """One import_batch: records, explicit closures and the cursor
        that covers them, in one ERP transaction."""
        debtors = [r for r in records if isinstance(r, Debtor)]
        items = [r for r in records if isinstance(r, OpenItem)]
        payments = [r for r in records if isinstance(r, Payment)]
        debtors += self.missing_debtors(items, debtors)
        batch = to_batch(debtors, items, payments, closed_items=closed)
        if batch.get('items'):
            known = self.erp_debtors | {d['external_id'] for d in
                                        batch.get('debtors', [])}
            kept = [i for i in batch['items'] if i['debtor'] in known]
            for item in batch['items']:
                if item['debtor'] not in known:
                    log.warning('open item %s left out: its debtor %s is '
                                'not in the package', item['external_id'],
                                item['debtor'])
            batch['items'] = kept
            names = {i['external_id'] for i in kept}
            batch['payments'] = [p for p in batch.get('payments', [])
                                 if p['item'] in names
                                 or p['item'] in self.erp_records]
            for key in ('items', 'payments'):
                if not batch[key]:
                    del batch[key]
        summary = self.sink.import_batch(batch, {stream: cursor})
        for key, value in (summary or {}).items():
            if isinstance(value, int):
                self.result.summary[key] = \
                    self.result.summary.get(key, 0) + value
        self.erp_debtors.update(d['external_id']
                                for d in batch.get('debtors', []))
        for item in batch.get('items', []):
            if Decimal(item['open_amount']) != 0:
                self.erp_open[item['external_id']] = (
                    item['open_amount'], item.get('currency'))
                self.erp_records[item['external_id']] = {
                    f: item.get(f) for f in COMPARED}
            else:
                self.erp_open.pop(item['external_id'], None)
                self.erp_records.pop(item['external_id'], None)
        for ext in batch.get('closed_items', []):
            self.erp_open.pop(ext, None)
            self.erp_records.pop(ext, None)
        self.erp_payments.update((p['external_id'], p['amount'])
                                 for p in batch.get('payments', []))

    def missing_debtors(self, items, debtors):
        """Debtors of these items that the ERP does not have yet (added to
        the package after the debtors pass), read from the package."""
        have = self.erp_debtors | {d.external_id for d in debtors}
        wanted = sorted({i.debtor for i in items} - have)
        if not wanted:
            return []
        rows = self.adapter.fetch_debtors(wanted)
        return [d for d in self.adapter.map('debtors', rows)
                if isinstance(d, Debtor)]

    # -- passes ----------------------------------------------------------
    def debtors(self):
        """Every debtor, sent as listed (the ERP writes only changes)."""
        stream = 'debtors'
        count = 0
        for page, records in self.pages(stream):
            self.send(stream, records, [], page.next_cursor)
            count += len(records)
        self.result.records[stream] = count

    def open_items(self):
        """One reconciliation pass: every open item listed, only what
        differs from the ERP sent. Returns (records sent or closed, open
        state of the package seen)."""
        stream = 'open_items'
        sent = 0
        seen: dict[str, tuple[str, str | None]] = {}
        # the ERP's open items in key order, to find those of a page's span
        order = sorted((self.adapter.order_key(k), k) for k in self.erp_open)
        keys = [o for o, _ in order]
        pending, pending_closed, pages = [], [], 0
        for page, records in self.pages(stream):
            items = {r.external_id: r for r in records
                     if isinstance(r, OpenItem)}
            seen.update((k, (_amount(r.open_amount), r.currency))
                        for k, r in items.items() if r.open_amount != 0)
            candidates = [k for _, k in order[self.span(page, keys)]
                          if k not in items and k in self.erp_open]
            fixed, closed = self.settle(candidates)
            seen.update((r.external_id, (_amount(r.open_amount), r.currency))
                        for r in fixed
                        if isinstance(r, OpenItem) and r.open_amount != 0)
            records = records + fixed
            changed = {r.external_id for r in records
                       if isinstance(r, OpenItem) and not self.same(r)}
            paid = {r.external_id for r in records if isinstance(r, Payment)
                    and self.erp_payments.get(r.external_id)
                    != _amount(r.amount)}
            records = [r for r in records
                       if r.external_id in changed or r.external_id in paid]
            sent += len(changed) + len(closed) + len(paid)
            pending += records
            pending_closed += closed
            pages += 1
            if not self.batch_records or len(pending) >= self.batch_records \
                    or page.last:
                self.send(stream, pending, pending_closed, page.next_cursor)
                self.result.pages += pages
                pending, pending_closed, pages = [], [], 0
        return sent, seen

    def span(self, page, keys) -> slice:
        """The slice of the sorted keys that ``page`` covers."""
        low = 0 if page.after is None else bisect.bisect_right(
            keys, self.adapter.order_key(page.after))
        high = len(keys) if page.last else bisect.bisect_right(
            keys, self.adapter.order_key(page.upto))
        return slice(low, max(low, high))

    def same(self, record):
        """Whether the ERP has this item as it is (what it would store)."""
        now = self.erp_records.get(record.external_id)
        if record.open_amount == 0:
            return now is None
        if now is None:
            return False
        new = item_dict(record)
        return all(now.get(f) == new.get(f) for f in now)

    def settle(self, candidates):
        """ERP open items the listing no longer shows: imported as the
        package has them now (paid, changed), or closed by id when the
        package confirms they are gone."""
        if not candidates:
            return [], []
        rows = self.adapter.fetch_items(candidates)
        records = self.adapter.map('open_items', rows)
        found = {r.external_id for r in records if isinstance(r, OpenItem)}
        gone = [k for k in candidates if k not in found]
        if gone:
            log.info('%d items no longer in the package: closed', len(gone))
        return records, gone

    def pages(self, stream):
        bar = _progress(stream, self.progress)
        cursor = self.sink.load_cursor(stream)
        log.info('sync %s/%s from cursor %s', self.adapter.name, stream,
                 cursor)
        try:
            for page in self.adapter.read(stream, cursor):
                records = self.adapter.map(stream, page.records)
                if bar is not None:
                    bar.update(len(page.records))
                yield page, records
        finally:
            if bar is not None:
                bar.close()


def run_sync(adapter: Adapter, sink: Sink, streams=None,
             progress=None, batch_records=None) -> SyncResult:
    """Sync ``adapter`` into ``sink`` until the ERP's open items equal the
    package's (see the module docstring).

    ``progress``: True/False forces the terminal progress bar on/off; None
    shows it only when stderr is a terminal.
    ``batch_records``: None sends one batch per page; a number gathers
    consecutive pages until they hold that many records (fewer, larger ERP
    transactions); the cursor sent is the one after the last page in the
    batch.
    ``streams``: limit to some of ``adapter.streams()`` (tests, CLI).
    """
    result = SyncResult()
    work = _Pass(adapter, sink, result, progress, batch_records)
    wanted = streams or adapter.streams()
    resuming = sink.load_cursor('open_items') is not None and \
        sink.load_cursor('debtors') is None
    if 'debtors' in wanted and not resuming:
        # (a pass of open_items under way means the debtors pass of this
        # sync was complete: a resumed sync goes on with the items)
        work.debtors()
    if 'open_items' in wanted:
        fresh = sink.load_cursor('open_items') is None
        for result.rounds in range(1, MAX_ROUNDS + 1):
            sent, seen = work.open_items()
            result.records['open_items'] = len(seen)
            log.info('sync %s/open_items pass %d: %d sent', adapter.name,
                     result.rounds, sent)
            # a whole pass that found nothing to send: the ERP is in step
            if not sent and (fresh or result.rounds > 1):
                break
        result.converged = not sent
        result.evidence = {'source': totals(seen),
                           'erp': totals(work.erp_open)}
        log.info('sync %s done: source %s, ERP %s', adapter.name,
                 result.evidence['source'], result.evidence['erp'])
    return result
