"""The sync engine: adapter pages -> canonical records -> one batch per page
-> Sink, with the cursor saved only after the sink accepted the page.

A sync killed at any point resumes from the last saved cursor; the page in
flight is read and sent again, which is harmless because
``import_batch`` is idempotent (same batch twice changes nothing).
"""
from __future__ import annotations

import copy
import logging
import sys
import threading
from dataclasses import dataclass, field
from decimal import Decimal

from .adapters.base import Adapter
from .canonical import records_to_batch

log = logging.getLogger(__name__)

SUMMARY_KEYS = ('debtors_created', 'debtors_updated', 'items_created',
                'items_updated', 'items_closed', 'payments_created')


class Sink:
    """Where batches go. The ERP implements the same three calls."""

    def import_batch(self, batch: dict) -> dict:
        """Import one IMPORT-BATCH.md batch atomically; return the summary.
        Must be idempotent. Raise to refuse the batch."""
        raise NotImplementedError

    def load_cursor(self, stream: str) -> str | None:
        raise NotImplementedError

    def save_cursor(self, stream: str, value: str | None) -> None:
        raise NotImplementedError


class SinkCrash(RuntimeError):
    """Raised by MemorySink(crash_after=k) to simulate a killed sync."""


class MemorySink(Sink):
    """In-memory ERP stand-in with the import_batch semantics of
    IMPORT-BATCH.md (validation of the whole batch first, upsert by
    external_id, open_amount 0 and closed_items close an item, payments
    idempotent by external_id). ``crash_after=k`` makes the (k+1)-th
    import raise SinkCrash, as if the process died mid-sync."""

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

    def import_batch(self, batch):
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
            self.batches.append(batch)
            return summary

    def load_cursor(self, stream):
        return self.cursors.get(stream)

    def save_cursor(self, stream, value):
        self.cursors[stream] = value

    def open_items(self):
        """{external_id: open_amount} of items not closed."""
        return {k: v['open_amount'] for k, v in self.items.items()
                if Decimal(v['open_amount']) != 0}


@dataclass
class SyncResult:
    pages: int = 0
    records: dict = field(default_factory=dict)
    summary: dict = field(default_factory=lambda: dict.fromkeys(
        SUMMARY_KEYS, 0))


def _progress(stream, enabled):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    disable = not enabled if enabled is not None else not sys.stderr.isatty()
    return tqdm(desc=stream, unit=' records', disable=disable, leave=True,
                file=sys.stderr)


def _dedupe(records):
    """Last record per external id: pages read while the source changes
    may repeat a row, and one batch must not name an id twice."""
    seen = {}
    for record in records:
        seen[getattr(record, 'external_id', id(record))] = record
    return list(seen.values())


def run_sync(adapter: Adapter, sink: Sink, streams=None,
             progress=None, batch_records=None) -> SyncResult:
    """Sync every stream of ``adapter`` into ``sink``.

    ``progress``: True/False forces the terminal progress bar on/off; None
    shows it only when stderr is a terminal.
    ``batch_records``: None sends one batch per page; a number gathers
    consecutive pages of a stream until they hold that many records and
    sends them as one batch (fewer, larger ERP transactions); the cursor
    saved is then the one after the last page in the batch, so a killed
    sync still resumes after the last batch the ERP accepted.
    """
    result = SyncResult()

    def flush(stream, records, cursor, pages):
        if records:
            batch = records_to_batch(stream, _dedupe(records))
            if batch:
                summary = sink.import_batch(batch)
                for key, value in (summary or {}).items():
                    if isinstance(value, int):
                        result.summary[key] = \
                            result.summary.get(key, 0) + value
        # only now are these pages safely in the ERP
        sink.save_cursor(stream, cursor)
        result.pages += pages

    for stream in streams or adapter.streams():
        cursor = sink.load_cursor(stream)
        log.info('sync %s/%s from cursor %s', adapter.name, stream, cursor)
        bar = _progress(stream, progress)
        count = 0
        pending, pending_pages, pending_cursor = [], 0, cursor
        try:
            for page in adapter.read(stream, cursor):
                records = adapter.map(stream, page.records)
                pending.extend(records)
                pending_pages += 1
                pending_cursor = page.next_cursor
                if not batch_records or len(pending) >= batch_records:
                    flush(stream, pending, pending_cursor, pending_pages)
                    pending, pending_pages = [], 0
                count += len(records)
                if bar is not None:
                    bar.update(len(records))
            if pending_pages:
                flush(stream, pending, pending_cursor, pending_pages)
        finally:
            if bar is not None:
                bar.close()
        result.records[stream] = count
        log.info('sync %s/%s done: %d records', adapter.name, stream, count)
    return result
