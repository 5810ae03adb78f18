"""Canonical records and the IMPORT-BATCH.md dict built from them.

Every adapter maps its source rows to these three dataclasses; ``to_batch``
turns a list of them into exactly the dict that
``payt.administration.import_batch(administration_id, batch)`` accepts
(amounts as decimal strings, dates as ISO strings).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

log = logging.getLogger(__name__)

# Limits of IMPORT-BATCH.md: longer strings make the ERP refuse the whole
# batch, so descriptive text is cut here and records with unusable ids are
# left out (and logged).
MAX_ID = 64
MAX_NAME = 200
MAX_EMAIL = 320
MAX_TEXT = 1000
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')


@dataclass
class Debtor:
    external_id: str
    name: str
    kind: str = 'business'
    email: str | None = None
    phone: str | None = None
    language: str | None = None
    street: str | None = None
    postal_code: str | None = None
    city: str | None = None
    country: str | None = None
    vat_number: str | None = None
    coc_number: str | None = None


@dataclass
class OpenItem:
    external_id: str
    debtor: str
    due_date: dt.date
    amount: Decimal
    open_amount: Decimal
    number: str | None = None
    description: str | None = None
    invoice_date: dt.date | None = None
    currency: str | None = None


@dataclass
class Payment:
    external_id: str
    item: str
    date: dt.date
    amount: Decimal


def parse_decimal(value) -> Decimal | None:
    """Decimal from a source value ("121.00", "121,00", 121, Decimal)."""
    if value is None or value == '':
        return None
    if isinstance(value, float):
        # JSON sources are parsed with parse_float=Decimal; a float here is
        # a programming error, do not silently round money.
        raise TypeError('float amounts are refused')
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    text = str(value).strip()
    if ',' in text and '.' in text:
        text = text.replace('.', '').replace(',', '.')
    elif ',' in text:
        text = text.replace(',', '.')
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(f'not an amount: {text[:40]!r}') from None


def parse_date(value) -> dt.date | None:
    """Date from "2020-04-01", "01-01-2016", "2020-04-01T00:00:00", ...

    Both iMUIS formats (dd-mm-yyyy and yyyy-mm-dd) are accepted.
    """
    if value is None or value == '':
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()[:10]
    # fast paths for the two iMUIS styles (strptime costs ~0.1 ms a call:
    # seconds over 100k items)
    try:
        if len(text) == 10 and text[4] == '-':
            return dt.date.fromisoformat(text)
        if len(text) == 10 and text[2] == '-' and text[5] == '-':
            return dt.date(int(text[6:]), int(text[3:5]), int(text[:2]))
    except ValueError:
        pass
    for fmt in ('%Y-%m-%d', '%d-%m-%Y', '%d/%m/%Y', '%Y/%m/%d'):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f'not a date: {text!r}')


def _text(value, limit):
    if value is None:
        return None
    text = _CONTROL.sub(' ', str(value)).strip()
    if not text:
        return None
    return text[:limit]


def _id_ok(value):
    return (isinstance(value, str) and 0 < len(value) <= MAX_ID
            and not _CONTROL.search(value))


def _amount(value: Decimal) -> str:
    return str(Decimal(value).quantize(Decimal('0.01')))


def debtor_dict(d: Debtor) -> dict:
    out = {'external_id': d.external_id,
           'name': _text(d.name, MAX_NAME) or d.external_id,
           'kind': d.kind if d.kind in ('business', 'consumer')
           else 'business'}
    email = _text(d.email, MAX_EMAIL + 1)
    if email and len(email) <= MAX_EMAIL and '@' in email:
        out['email'] = email
    for key in ('phone', 'street', 'postal_code', 'city', 'vat_number',
                'coc_number'):
        value = _text(getattr(d, key), MAX_NAME)
        if value:
            out[key] = value
    if d.language in ('nl', 'en'):
        out['language'] = d.language
    country = _text(d.country, 2)
    if country and len(country) == 2 and country.isalpha():
        out['country'] = country.upper()
    return out


def item_dict(i: OpenItem) -> dict:
    out = {'external_id': i.external_id, 'debtor': i.debtor,
           'due_date': i.due_date.isoformat(),
           'amount': _amount(i.amount),
           'open_amount': _amount(i.open_amount)}
    if i.number:
        out['number'] = _text(i.number, MAX_ID)
    if i.description:
        out['description'] = _text(i.description, MAX_TEXT)
    if i.invoice_date:
        out['invoice_date'] = i.invoice_date.isoformat()
    currency = _text(i.currency, 3)
    if currency and len(currency) == 3 and currency.isalpha():
        out['currency'] = currency.upper()
    return out


def payment_dict(p: Payment) -> dict:
    return {'external_id': p.external_id, 'item': p.item,
            'date': p.date.isoformat(), 'amount': _amount(p.amount)}


def to_batch(debtors=(), items=(), payments=(), closed_items=(),
             complete=False) -> dict:
    """Build the IMPORT-BATCH.md dict.

    Records whose ids the ERP would refuse (empty, > 64 chars, control
    characters) are left out and logged; so are later duplicates of the
    same external id inside this batch (the last version wins), and items
    whose debtor id is unusable. Only non-empty lists are included.
    """
    batch: dict = {}
    seen: dict[str, dict] = {}
    for d in debtors:
        if not _id_ok(d.external_id):
            log.warning('debtor with unusable external id left out (%d chars)',
                        len(str(d.external_id)))
            continue
        seen[d.external_id] = debtor_dict(d)
    if seen:
        batch['debtors'] = list(seen.values())
    seen = {}
    for i in items:
        if not (_id_ok(i.external_id) and _id_ok(i.debtor)):
            log.warning('open item with unusable id left out')
            continue
        seen[i.external_id] = item_dict(i)
    if seen:
        batch['items'] = list(seen.values())
    seen = {}
    for p in payments:
        if not (_id_ok(p.external_id) and _id_ok(p.item)):
            log.warning('payment with unusable id left out')
            continue
        seen[p.external_id] = payment_dict(p)
    if seen:
        batch['payments'] = list(seen.values())
    closed = [c for c in dict.fromkeys(closed_items) if _id_ok(c)]
    if closed:
        batch['closed_items'] = closed
    if complete:
        batch['complete'] = True
    return batch


def records_to_batch(stream: str, records) -> dict:
    """to_batch for one stream's page of canonical records."""
    key = {'debtors': 'debtors', 'open_items': 'items',
           'payments': 'payments'}[stream]
    return to_batch(**{key: records})
