# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The bulk entry point: validate a whole batch, then upsert it set-based.

Nothing is written until every record of the batch is valid; the writes are
multi-row statements inside the caller's transaction, so a failure half-way
rolls everything back. See docs/IMPORT-BATCH.md for the contract.
"""
import datetime
import re
from decimal import Decimal, InvalidOperation

from sql.functions import CurrentTimestamp
from sql.aggregate import Max

from trytond import backend
from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.pool import Pool
from trytond.transaction import Transaction

from .bulk import const, invalidate_caches
from .flow import DEBTOR_KINDS, LANGUAGES
from .timeline import event_params
from .webhook_event import emit_import

CHUNK = 1000
MAX_ERRORS_SHOWN = 20
MAX_AMOUNT = Decimal('1e12')
LIMITS = {'external_id': 64, 'name': 200, 'email': 320, 'phone': 40,
    'street': 200, 'postal_code': 20, 'city': 100, 'country': 2,
    'vat_number': 40, 'coc_number': 40, 'number': 64, 'description': 1000,
    'currency': 3}
CONTROL = re.compile(r'[\x00-\x1f\x7f]')
# Free text may span lines; no other control character (NUL above all,
# which PostgreSQL refuses and which hides text in exports) is stored.
CONTROL_IN_TEXT = re.compile(r'[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')
MULTILINE = {'description', 'street'}
EMAIL = re.compile(r'^[^@\s]+@[^@\s]+\.[^@\s]+$')
DEBTOR_FIELDS = ['name', 'kind', 'email', 'phone', 'language', 'street',
    'postal_code', 'city', 'country', 'vat_number', 'coc_number']
ITEM_FIELDS = ['debtor', 'number', 'description', 'invoice_date', 'due_date',
    'currency', 'amount', 'open_amount']


class BatchErrors(Exception):
    pass


class Validator:
    "Turns raw batch records into clean values, collecting every error."

    def __init__(self, currencies):
        self.currencies = currencies
        self.errors = []

    def error(self, kind, external_id, field, message):
        self.errors.append('%s "%s", field "%s": %s' % (
                kind, str(external_id)[:64], field, message))

    def text(self, kind, record, field, required=False, default=None):
        value = record.get(field)
        if value is None or value == '':
            if required:
                self.error(kind, record.get('external_id'), field,
                    "is required")
            return default
        if not isinstance(value, str):
            self.error(kind, record.get('external_id'), field,
                "must be text, got %s" % type(value).__name__)
            return default
        value = value.strip()
        limit = LIMITS.get(field, 200)
        if len(value) > limit:
            self.error(kind, record.get('external_id'), field,
                "is %s characters long, at most %s allowed"
                % (len(value), limit))
            return default
        control = CONTROL_IN_TEXT if field in MULTILINE else CONTROL
        if control.search(value):
            self.error(kind, record.get('external_id'), field,
                "contains control characters")
            return default
        return value

    def choice(self, kind, record, field, choices, default):
        value = record.get(field)
        if value is None:
            return default
        if value not in choices:
            self.error(kind, record.get('external_id'), field,
                "must be one of %s, got %r" % (', '.join(choices),
                    str(value)[:40]))
            return default
        return value

    def date(self, kind, record, field, required=False):
        value = record.get(field)
        if value is None or value == '':
            if required:
                self.error(kind, record.get('external_id'), field,
                    "is required")
            return None
        if isinstance(value, datetime.date) and not isinstance(
                value, datetime.datetime):
            return value
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            return datetime.date.fromisoformat(value)
        except ValueError:
            self.error(kind, record.get('external_id'), field,
                "must be a date YYYY-MM-DD, got %r" % str(value)[:40])
            return None

    def amount(self, kind, record, field, digits):
        value = record.get(field)
        external_id = record.get('external_id')
        if value is None:
            self.error(kind, external_id, field, "is required")
            return None
        if isinstance(value, (bool, float)) or not isinstance(
                value, (str, int, Decimal)):
            self.error(kind, external_id, field,
                "must be a decimal string, got %s" % type(value).__name__)
            return None
        try:
            amount = Decimal(value.strip() if isinstance(value, str)
                else value)
        except InvalidOperation:
            self.error(kind, external_id, field,
                "is not a number: %r" % str(value)[:40])
            return None
        if not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
            self.error(kind, external_id, field,
                "is out of range: %r" % str(value)[:40])
            return None
        exp = Decimal(1).scaleb(-digits)
        if amount.quantize(exp) != amount:
            self.error(kind, external_id, field,
                "has more than %s decimals: %s" % (digits, value))
            return None
        return amount.quantize(exp)


class BatchImporter:
    "Upserts one batch into one administration."

    def __init__(self, administration):
        pool = Pool()
        self.administration = administration
        self.company = administration.company
        self.Debtor = pool.get('payt.debtor')
        self.Item = pool.get('payt.item')
        self.Payment = pool.get('payt.payment')
        self.Event = pool.get('payt.event')
        self.Attention = pool.get('payt.attention')
        self.cursor = Transaction().connection.cursor()
        self.user = Transaction().user
        self.today = pool.get('ir.date').today()
        self._now = None  # the transaction's CURRENT_TIMESTAMP, for COPY
        self.summary = dict.fromkeys([
                'debtors_created', 'debtors_updated', 'items_created',
                'items_updated', 'items_closed', 'items_reopened',
                'payments_created', 'payments_updated'], 0)
        # What changed, for the webhooks' events (webhook.emit_import).
        self.changes = {'max_item_before': None, 'paid': [], 'reopened': [],
            'closed': [], 'payments': []}

    # -- reading what is stored -------------------------------------------
    def _currencies(self):
        Currency = Pool().get('currency.currency')
        return {c.code: (c.id, c.digits) for c in Currency.search([])}

    def _stored(self, Model, columns, external_ids):
        """The stored rows of these external ids: a batch reads what it
        touches, not the whole administration, so a sync of many batches
        stays linear."""
        table = Model.__table__()
        external_ids = list(external_ids)
        stored = {}
        for start in range(0, len(external_ids), CHUNK):
            self.cursor.execute(*table.select(table.external_id, table.id,
                    *[getattr(table, c) for c in columns],
                    where=(table.administration == self.administration.id)
                    & table.external_id.in_(
                        external_ids[start:start + CHUNK])))
            stored.update((row[0], row[1:]) for row in self.cursor)
        return stored

    # -- validation -------------------------------------------------------
    def validate(self, batch):
        if not isinstance(batch, dict):
            raise UserError(gettext('payt_dunning.msg_batch_not_a_dict',
                    type=type(batch).__name__))
        currencies = self._currencies()
        v = Validator(currencies)
        for key in ['debtors', 'items', 'payments', 'closed_items', 'keep']:
            if not isinstance(batch.get(key, []), list):
                v.error('batch', key, key, "must be a list")
        if not isinstance(batch.get('complete', False), bool):
            v.error('batch', 'complete', 'complete', "must be true or false")
        close_count = batch.get('close_count')
        if close_count is not None and (not isinstance(close_count, int)
                or isinstance(close_count, bool) or close_count < 0):
            v.error('batch', 'close_count', 'close_count',
                "must be a whole number of at least 0")
        if v.errors:
            self._reject(v.errors)
        debtors = self._validate_debtors(v, batch.get('debtors', []))
        referenced = {r['debtor'] for r in batch.get('items', [])
            if isinstance(r, dict) and isinstance(r.get('debtor'), str)}
        known_debtors = set(debtors) | set(
            self._stored(self.Debtor, [], referenced - set(debtors)))
        items = self._validate_items(v, batch.get('items', []),
            known_debtors, currencies)
        payments = self._validate_payments(v, batch.get('payments', []))
        closed = self._external_ids(v, batch, 'closed_items')
        self.keep = set(self._external_ids(v, batch, 'keep'))
        if v.errors:
            self._reject(v.errors)
        return debtors, items, payments, closed

    @staticmethod
    def _external_ids(v, batch, key):
        "A list of external ids of items (closed_items, keep)."
        result = []
        for external_id in batch.get(key, []):
            if (not isinstance(external_id, str) or not external_id
                    or len(external_id) > LIMITS['external_id']
                    or CONTROL.search(external_id)):
                v.error('item', str(external_id)[:64], key,
                    "must be an external id (text of at most 64 characters)")
            else:
                result.append(external_id)
        return result

    def _records(self, v, kind, records):
        seen = set()
        for record in records:
            if not isinstance(record, dict):
                v.error(kind, '?', '-', "must be a mapping, got %s"
                    % type(record).__name__)
                continue
            external_id = v.text(kind, record, 'external_id', required=True)
            if external_id is None:
                continue
            if external_id in seen:
                v.error(kind, external_id, 'external_id',
                    "appears twice in the batch")
                continue
            seen.add(external_id)
            yield external_id, record

    def _validate_debtors(self, v, records):
        debtors = {}
        kinds = [k for k, _ in DEBTOR_KINDS]
        languages = [l for l, _ in LANGUAGES]
        for external_id, record in self._records(v, 'debtor', records):
            values = {f: v.text('debtor', record, f) for f in DEBTOR_FIELDS
                if f not in ('kind', 'language')}
            values['name'] = v.text('debtor', record, 'name', required=True)
            values['kind'] = v.choice('debtor', record, 'kind', kinds,
                'business')
            values['language'] = v.choice('debtor', record, 'language',
                languages, 'nl')
            if values['email'] and not EMAIL.match(values['email']):
                v.error('debtor', external_id, 'email',
                    "is not an email address: %r" % values['email'][:60])
            if values['country']:
                values['country'] = values['country'].upper()
            debtors[external_id] = values
        return debtors

    def _validate_items(self, v, records, known_debtors, currencies):
        items = {}
        default_currency = self.company.currency.code
        for external_id, record in self._records(v, 'item', records):
            values = {
                'debtor': v.text('item', record, 'debtor', required=True),
                'number': v.text('item', record, 'number'),
                'description': v.text('item', record, 'description'),
                'invoice_date': v.date('item', record, 'invoice_date'),
                'due_date': v.date('item', record, 'due_date',
                    required=True),
                }
            code = v.text('item', record, 'currency',
                default=default_currency) or default_currency
            if code.upper() not in currencies:
                v.error('item', external_id, 'currency',
                    "unknown currency %r" % code)
                continue
            currency_id, digits = currencies[code.upper()]
            values['currency'] = currency_id
            values['amount'] = v.amount('item', record, 'amount', digits)
            values['open_amount'] = v.amount(
                'item', record, 'open_amount', digits)
            if values['debtor'] and values['debtor'] not in known_debtors:
                v.error('item', external_id, 'debtor',
                    "unknown debtor %r: send it in the batch's debtors"
                    % values['debtor'])
            if (values['amount'] is not None
                    and values['open_amount'] is not None
                    and values['amount'] >= 0
                    and values['open_amount'] > values['amount']):
                v.error('item', external_id, 'open_amount',
                    "%s is more than the amount %s" % (
                        values['open_amount'], values['amount']))
            items[external_id] = values
        return items

    def _validate_payments(self, v, records):
        payments = {}
        digits = self.company.currency.digits
        for external_id, record in self._records(v, 'payment', records):
            payments[external_id] = {
                'item': v.text('payment', record, 'item', required=True),
                'date': v.date('payment', record, 'date', required=True),
                'amount': v.amount('payment', record, 'amount', digits),
                }
        return payments

    def _reject(self, errors):
        shown = errors[:MAX_ERRORS_SHOWN]
        if len(errors) > MAX_ERRORS_SHOWN:
            shown.append("... and %s more" % (len(errors) - MAX_ERRORS_SHOWN))
        raise UserError(gettext('payt_dunning.msg_batch_invalid',
                administration=self.administration.rec_name,
                count=len(errors), errors='\n'.join(shown)))

    # -- writing ----------------------------------------------------------
    def run(self, batch):
        # One import or run at a time per administration. Locked before
        # validating: Tryton takes the lock by restarting the transaction,
        # which would otherwise validate the whole batch twice.
        self.administration.__class__.lock([self.administration])
        debtors, items, payments, closed = self.validate(batch)
        if batch.get('complete', False):
            self._check_complete(items, closed, batch.get('close_count'))
        debtor_ids = self._upsert_debtors(debtors,
            {i['debtor'] for i in items.values()})
        item_ids = self._upsert_items(items, debtor_ids,
            {p['item'] for p in payments.values()})
        self._close(items, closed, batch.get('complete', False))
        self._insert_payments(payments, item_ids)
        invalidate_caches()
        emit_import(self)
        return self.summary

    def _insert(self, table, columns, rows):
        """rows: (value, ...). PostgreSQL: one COPY (a first sync inserts
        hundreds of thousands of rows: a statement per row spent more time
        in the driver and the round trips than in the database). Other
        backends: one prepared single-row statement for all of them."""
        if not rows:
            return
        if backend.name == 'postgresql':
            return self._copy(table, columns, rows)
        query = table.insert(columns + [table.create_uid, table.create_date],
            [[0] * len(columns) + [self.user, CurrentTimestamp()]])
        sql = str(query)
        fixed = list(query.params[len(columns):])
        self.cursor.executemany(sql, [list(r) + fixed for r in rows])

    def _copy(self, table, columns, rows):
        "COPY rows into table, stamped like an INSERT at this moment."
        if self._now is None:
            self.cursor.execute('SELECT CAST(CURRENT_TIMESTAMP AS TIMESTAMP)')
            self._now, = self.cursor.fetchone()
        names = ', '.join('"%s"' % c.name
            for c in columns + [table.create_uid, table.create_date])
        with self.cursor.copy('COPY "%s" (%s) FROM STDIN' % (
                    table._name, names)) as copy:
            for row in rows:
                copy.write_row(list(row) + [self.user, self._now])
        self._analyze_if_grown(table._name, len(rows))

    def _analyze_if_grown(self, name, inserted):
        """ANALYZE a table this batch grew by half or more. A first sync
        fills empty tables batch after batch, faster than autovacuum
        analyses them: without column statistics the planner took
        "administration = X" for selective and read all of the
        administration's rows for every chunk of external ids, each batch
        slower than the one before (0.4 s for the first, 15 s for the 50th
        of a 100,000-item sync). About ten ANALYZEs over such a sync."""
        self.cursor.execute(
            'SELECT reltuples FROM pg_class WHERE oid = %s::regclass',
            ('"%s"' % name,))
        estimated, = self.cursor.fetchone()
        if inserted >= 100 and inserted * 2 >= estimated:
            self.cursor.execute('ANALYZE "%s"' % name)

    def _update(self, table, columns, rows):
        "rows: (id, value, ...); one prepared statement for all of them."
        if not rows:
            return
        query = table.update(columns + [table.write_uid, table.write_date],
            [0] * len(columns) + [self.user, CurrentTimestamp()],
            where=table.id == 0)
        sql = str(query)
        fixed = list(query.params[len(columns):-1])
        self.cursor.executemany(sql,
            [list(r[1:]) + fixed + [r[0]] for r in rows])

    def _upsert_debtors(self, debtors, referenced):
        "Insert or update the debtors; the ids of those the items refer to."
        table = self.Debtor.__table__()
        stored = self._stored(self.Debtor, DEBTOR_FIELDS, debtors)
        new, changed = [], []
        for external_id, values in debtors.items():
            row = [values[f] for f in DEBTOR_FIELDS]
            if external_id not in stored:
                new.append([self.company.id, self.administration.id,
                        external_id] + row)
            elif list(stored[external_id][1:]) != row:
                changed.append([stored[external_id][0]] + row)
        self._insert(table, [table.company, table.administration,
                table.external_id] + [getattr(table, f)
                for f in DEBTOR_FIELDS], new)
        self._update(table, [getattr(table, f) for f in DEBTOR_FIELDS],
            changed)
        self.summary['debtors_created'] = len(new)
        self.summary['debtors_updated'] = len(changed)
        return {k: v[0] for k, v in self._stored(
                self.Debtor, [], referenced).items()}

    def _upsert_items(self, items, debtor_ids, referenced):
        "Insert or update the items; the ids of these and the referenced."
        table = self.Item.__table__()
        columns = ITEM_FIELDS + ['state', 'paid_date']
        stored = self._stored(self.Item, columns, items)
        self.cursor.execute(*table.select(Max(table.id)))
        max_before = self.cursor.fetchone()[0] or 0
        new, changed, closed, reopened, negative = [], [], [], [], []
        for external_id, values in items.items():
            values = dict(values, debtor=debtor_ids[values['debtor']])
            paid = values['open_amount'] == 0
            values['state'] = 'paid' if paid else 'open'
            previous = stored.get(external_id)
            if previous is not None:
                was = dict(zip(columns, previous[1:]))
                values['paid_date'] = (was['paid_date'] or self.today
                    ) if paid else None
                row = [values[c] for c in columns]
                if self._differs(was, values, columns):
                    changed.append([previous[0]] + row)
                    if paid and was['state'] == 'open':
                        closed.append(previous[0])
                    elif not paid and was['state'] == 'paid':
                        reopened.append(previous[0])
            else:
                values['paid_date'] = self.today if paid else None
                new.append([self.company.id, self.administration.id,
                        external_id] + [values[c] for c in columns])
            if values['open_amount'] < 0:
                negative.append(external_id)
        self._insert(table, [table.company, table.administration,
                table.external_id] + [getattr(table, c) for c in columns],
            new)
        self._update(table, [getattr(table, c) for c in columns], changed)
        self.summary['items_created'] = len(new)
        self.summary['items_updated'] = len(changed)
        self.summary['items_closed'] += len(closed)
        self.summary['items_reopened'] = len(reopened)
        self._events_for_new_items(max_before)
        self.changes.update(max_item_before=max_before, paid=closed,
            reopened=reopened)
        self._events(closed, 'paid', 'msg_event_closed_paid')
        self._events(reopened, 'reopened', 'msg_event_reopened')
        ids = {k: v[0] for k, v in self._stored(
                self.Item, [], set(items) | referenced).items()}
        self._raise_for_items('msg_attention_negative_item',
            {ids[e]: e for e in negative})
        return ids

    def _raise_for_items(self, text_key, references):
        """One booking-error point of attention per item in references
        ({item id: its reference}) that has none open yet, in the words of
        text_key: each stays linked to its item, so the back office opens
        the credit note from its work list. Set-based (one select, one
        insert): a first sync of a package that books unlinked credit notes
        brings thousands at once."""
        if not references:
            return
        table = self.Attention.__table__()
        existing = set()
        ids = list(references)
        for start in range(0, len(ids), 10000):
            self.cursor.execute(*table.select(table.item,
                    where=(table.administration == self.administration.id)
                    & (table.reason == 'booking_error')
                    & (table.state == 'open')
                    & table.item.in_(ids[start:start + 10000])))
            existing.update(r[0] for r in self.cursor)
        self._insert(table, [table.company, table.administration,
                table.item, table.reason, table.text_key, table.text_params,
                table.date, table.state],
            [[self.company.id, self.administration.id, item_id,
                    'booking_error', text_key,
                    event_params(reference=reference), self.today, 'open']
                for item_id, reference in references.items()
                if item_id not in existing])

    @staticmethod
    def _differs(was, values, columns):
        for column in columns:
            old, new = was[column], values[column]
            if isinstance(new, Decimal) and old is not None:
                old = Decimal(str(old))
            if isinstance(new, datetime.date) and isinstance(old, str):
                old = datetime.date.fromisoformat(old)
            if old != new:
                return True
        return False

    def _events_for_new_items(self, max_before):
        item, event = self.Item.__table__(), self.Event.__table__()
        self.cursor.execute(*event.insert(
                [event.company, event.item, event.date, event.kind,
                    event.text_key, event.create_uid, event.create_date],
                item.select(item.company, item.id, const(self.today, 'DATE'),
                    const('imported', 'VARCHAR'),
                    const('msg_event_imported', 'VARCHAR'),
                    const(self.user, 'INTEGER'), CurrentTimestamp(),
                    where=(item.administration == self.administration.id)
                    & (item.id > max_before))))

    def _events(self, item_ids, kind, text_key):
        event = self.Event.__table__()
        self._insert(event, [event.company, event.item, event.date,
                event.kind, event.text_key],
            [[self.company.id, i, self.today, kind, text_key]
                for i in item_ids])

    def _open_items(self):
        "{external_id: id} of the administration's open items."
        table = self.Item.__table__()
        self.cursor.execute(*table.select(table.external_id, table.id,
                where=(table.administration == self.administration.id)
                & (table.state == 'open')))
        return dict(self.cursor)

    def _gone(self, open_items, items, closed_ids):
        "What a complete batch closes: what it neither sends nor keeps."
        return (set(open_items) - set(items) - self.keep) | set(closed_ids)

    def _check_complete(self, items, closed_ids, close_count):
        """A complete batch closes every open item it does not list. An
        empty or truncated list would close everything, so it must list
        what it keeps, and a confirmed count must be exact. Nothing is
        ever closed by an empty list without that confirmation."""
        open_items = self._open_items()
        count = len([e for e in self._gone(open_items, items, closed_ids)
                if e in open_items])
        listed = set(items) | self.keep
        if close_count is None and not listed and count:
            raise UserError(gettext('payt_dunning.msg_import_complete_keep',
                    administration=self.administration.rec_name,
                    count=count))
        if close_count is not None and close_count != count:
            raise UserError(gettext('payt_dunning.msg_import_close_count',
                    administration=self.administration.rec_name,
                    confirmed=close_count, count=count))

    def _close(self, items, closed_ids, complete):
        "Close items the source no longer lists as open."
        if not closed_ids and not complete:
            return
        table = self.Item.__table__()
        if complete:
            open_items = self._open_items()
            gone = self._gone(open_items, items, closed_ids)
        else:
            open_items = {e: i for e, (i, state) in self._stored(
                    self.Item, ['state'], closed_ids).items()
                if state == 'open'}
            gone = set(closed_ids)
        to_close = [open_items[e] for e in gone if e in open_items]
        for start in range(0, len(to_close), CHUNK):
            self.cursor.execute(*table.update(
                    [table.state, table.open_amount, table.paid_date,
                        table.write_uid, table.write_date],
                    ['paid', 0, self.today, self.user, CurrentTimestamp()],
                    where=table.id.in_(to_close[start:start + CHUNK])))
        self._events(to_close, 'paid', 'msg_event_closed_not_open')
        self.changes['closed'] = to_close
        self.summary['items_closed'] += len(to_close)

    def _insert_payments(self, payments, item_ids):
        """New payments are inserted; a known one whose amount changed is
        updated (sources that report the total paid so far per item)."""
        table = self.Payment.__table__()
        stored = self._stored(self.Payment, ['amount'], payments)
        rows, changed, events, orphans = [], [], [], []
        for external_id, values in payments.items():
            item_id = item_ids.get(values['item'])
            if external_id in stored:
                payment_id, amount = stored[external_id]
                if Decimal(str(amount)) != values['amount']:
                    changed.append([payment_id, values['amount'],
                            values['date']])
                    if item_id:
                        events.append([self.company.id, item_id,
                                values['date'], 'payment',
                                'msg_event_payment_changed', event_params(
                                    reference=external_id,
                                    amount=values['amount'])])
                continue
            rows.append([self.company.id, self.administration.id, item_id,
                    external_id, values['date'], values['amount'], 'import'])
            if item_id:
                events.append([self.company.id, item_id, values['date'],
                        'payment', 'msg_event_payment', event_params(
                            reference=external_id, amount=values['amount'])])
            else:
                orphans.append("%s (%s, %s)" % (
                        external_id, values['amount'], values['item']))
        if orphans:
            # One point of attention lists them all (raise_for keeps one
            # per administration open): a search per payment is not needed.
            self.Attention.raise_for(self.administration, 'booking_error',
                'msg_attention_payments_unknown_item',
                payments=", ".join(orphans))
        self._insert(table, [table.company, table.administration,
                table.item, table.external_id, table.date, table.amount,
                table.source], rows)
        self._update(table, [table.amount, table.date], changed)
        event = self.Event.__table__()
        self._insert(event, [event.company, event.item, event.date,
                event.kind, event.text_key, event.text_params], events)
        self.summary['payments_created'] = len(rows)
        self.changes['payments'] = [r[3] for r in rows if r[2]]
        self.summary['payments_updated'] = len(changed)
