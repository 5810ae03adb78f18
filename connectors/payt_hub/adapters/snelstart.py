"""SnelStart B2B API v2 adapter (httpx).

Settings:
  client_key          the administration's koppelsleutel (secret)
  subscription_key    product's primary Ocp-Apim-Subscription-Key (secret)
  secondary_key       product's secondary subscription key (secret,
                      optional): used after a 429, as public clients do
  base_url            default https://b2bapi.snelstart.nl/v2/
  auth_url            default https://auth.snelstart.nl/b2b/token
  page_size           $top, at most 500 (default 500)
  timeout, attempts, retry_wait

Streams: ``debtors`` = relaties (those with relatiesoort Klant), listed
whole at every sync; ``open_items`` = verkoopfacturen with ``OpenstaandSaldo
ne 0``, listed whole at every sync (there is no open-items endpoint). Each
invoice also gives one cumulative payment record (external id
``<invoice id>:paid``, amount factuurBedrag - openstaandSaldo, dated on its
modifiedOn): bankboekingen are not linked to an invoice in the public shape,
so they cannot say *which* item was paid. A negative invoice is a credit
note; SnelStart does not say which invoice it credits, so it stands alone,
described as a credit note. SnelStart has no currency field: EUR.

Paging: SnelStart offers ``$top``/``$skip`` and documents no order and no
``$orderby``. Listings come in a stable order of ``id``; the adapter checks
that order on every page (SourceDataError if it is broken) and pages by
*anchored offsets*: each request starts ``OVERLAP`` rows before the offset
where the last id seen should be, and keeps only ids greater than it. Rows
that moved back (an invoice before them paid or deleted) or forward (one
added) are found again instead of being skipped; when the window moved past
the anchor it steps back. The result is keyset paging over an offset API.

Cursor (JSON): {"after": "<last id imported>", "skip": <offset>} while a
pass is under way; None once it is complete.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import time
from decimal import Decimal

import httpx

from ..canonical import Debtor, OpenItem, Payment, parse_date, parse_decimal
from ..errors import (HubError, LinkError, SourceDataError, TransientError,
                      Unreachable)
from ..retry import retrying
from .base import Adapter, Page, dump_cursor, load_cursor, register

log = logging.getLogger(__name__)

MAX_TOP = 500


def _error_text(resp):
    """Text of a SnelStart error body: [{errorCode, message}],
    {modelState: {...}}, {Message} or {message}."""
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(data, list):
        return '; '.join(f'{e.get("errorCode", "")} {e.get("message", "")}'
                         .strip() for e in data if isinstance(e, dict))
    if isinstance(data, dict):
        if 'modelState' in data:
            return '; '.join(f'{k}: {", ".join(map(str, v))}'
                             for k, v in (data['modelState'] or {}).items())
        return str(data.get('Message') or data.get('message')
                   or data.get('error_description') or data.get('error')
                   or data)[:200]
    return str(data)[:200]


def _retry_after(resp):
    value = resp.headers.get('Retry-After')
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime
            when = parsedate_to_datetime(value)
            return max(0.0, (when - dt.datetime.now(when.tzinfo))
                       .total_seconds())
        except (TypeError, ValueError):
            return None


@register('snelstart')
class SnelstartAdapter(Adapter):
    secret_settings = ('client_key', 'subscription_key', 'secondary_key')

    def __init__(self, client_key, subscription_key, secondary_key=None,
                 base_url='https://b2bapi.snelstart.nl/v2/',
                 auth_url='https://auth.snelstart.nl/b2b/token',
                 page_size=MAX_TOP, timeout=30, attempts=5, retry_wait=0.5,
                 **extra):
        super().__init__(client_key=client_key,
                         subscription_key=subscription_key,
                         secondary_key=secondary_key, base_url=base_url,
                         auth_url=auth_url, page_size=page_size, **extra)
        self.client_key = client_key
        self.keys = [k for k in (subscription_key, secondary_key) if k]
        self.key_index = 0
        self.base_url = base_url.rstrip('/') + '/'
        self.auth_url = auth_url
        self.page_size = min(int(page_size), MAX_TOP)
        self.attempts = attempts
        self.retry_wait = retry_wait
        self.http = httpx.Client(timeout=timeout)
        self._token = None
        self._token_expires = 0.0
        self._landen = None

    def close(self):
        self.http.close()

    # -- auth ----------------------------------------------------------
    def _get_token(self):
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        try:
            resp = self.http.post(self.auth_url, data={
                'grant_type': 'clientkey', 'clientkey': self.client_key})
        except httpx.TransportError as exc:
            raise TransientError(f'SnelStart auth: network error '
                                 f'({type(exc).__name__})') from None
        if resp.status_code in (400, 401, 403):
            raise LinkError('SnelStart refused the client key (koppelsleutel)'
                            ': it is unknown or was revoked; make a new one '
                            'in SnelStart Web under "Koppelingen" '
                            f'(SnelStart says: {_error_text(resp)})',
                            'wrong_client_key')
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientError(f'SnelStart auth: HTTP {resp.status_code}',
                                 _retry_after(resp))
        if resp.status_code != 200:
            raise HubError(f'SnelStart auth: HTTP {resp.status_code}')
        try:
            data = resp.json()
            token = data['access_token']
            expires_in = float(data.get('expires_in') or 3599)
        except (ValueError, KeyError, TypeError):
            raise SourceDataError('SnelStart auth: malformed token reply'
                                  ) from None
        from .. import logsafe
        logsafe.register(token)
        # refresh a minute before expiry (or halfway for short tokens)
        margin = 60 if expires_in > 120 else expires_in / 2
        self._token = token
        self._token_expires = time.monotonic() + expires_in - margin
        log.info('SnelStart token obtained, valid %.0f s', expires_in)
        return token

    def _headers(self):
        return {'Authorization': f'Bearer {self._get_token()}',
                'Ocp-Apim-Subscription-Key': self.keys[self.key_index],
                'Accept': 'application/json'}

    # -- HTTP ----------------------------------------------------------
    def get(self, path, params=None):
        """GET base_url+path, JSON parsed with Decimal numbers; retries."""
        def once():
            for attempt in (1, 2):
                try:
                    resp = self.http.get(self.base_url + path,
                                         params=params,
                                         headers=self._headers())
                except httpx.TransportError as exc:
                    raise TransientError(f'SnelStart {path}: network error '
                                         f'({type(exc).__name__})') from None
                if resp.status_code == 401 and attempt == 1:
                    self._token = None  # expired token: get a new one
                    continue
                break
            status = resp.status_code
            if status == 429:
                if len(self.keys) > 1:
                    self.key_index = (self.key_index + 1) % len(self.keys)
                    log.warning('SnelStart 429: switching to the %s '
                                'subscription key',
                                'secondary' if self.key_index else 'primary')
                raise TransientError(f'SnelStart {path}: HTTP 429',
                                     _retry_after(resp))
            if status >= 500:
                raise TransientError(f'SnelStart {path}: HTTP {status}',
                                     _retry_after(resp))
            if status == 401:
                raise LinkError('SnelStart refused the subscription key '
                                '(Ocp-Apim-Subscription-Key) or the token '
                                f'(SnelStart says: {_error_text(resp)})',
                                'wrong_subscription_key')
            if status == 403:
                raise LinkError('SnelStart: access to this administration is '
                                f'refused ({_error_text(resp)})', 'rejected')
            if status != 200:
                raise HubError(f'SnelStart {path}: HTTP {status}: '
                               f'{_error_text(resp)}')
            try:
                return json.loads(resp.content, parse_float=Decimal)
            except ValueError:
                raise SourceDataError(f'SnelStart {path}: malformed JSON '
                                      'reply refused') from None
        return retrying(self.attempts, self.retry_wait)(once)

    # -- interface -----------------------------------------------------
    def validate(self):
        try:
            self._get_token()
            self.get('relaties', {'$top': 1})
        except TransientError as exc:
            if 'network error' in str(exc):
                raise Unreachable(f'SnelStart is unreachable ({exc})'
                                  ) from None
            raise

    def order_key(self, external_id):
        return str(external_id).lower()

    def read(self, stream, cursor):
        path, odata = {'debtors': ('relaties', None),
                       'open_items': ('verkoopfacturen',
                                      'OpenstaandSaldo ne 0')}[stream]
        state = load_cursor(cursor)
        after, skip = state.get('after'), int(state.get('skip') or 0)
        overlap = max(1, self.page_size // 10)
        while True:
            start = max(0, skip - overlap) if after else skip
            params = {'$top': self.page_size, '$skip': start}
            if odata:
                params['$filter'] = odata
            rows = self.get(path, params)
            if not isinstance(rows, list) or not all(
                    isinstance(r, dict) and r.get('id') for r in rows):
                raise SourceDataError(f'SnelStart {path}: expected a list '
                                      'of records with an id')
            keys = [self.order_key(r['id']) for r in rows]
            if keys != sorted(keys):
                raise SourceDataError(f'SnelStart {path}: listing not in id '
                                      'order; paging would be unsafe')
            last = len(rows) < self.page_size
            anchor = self.order_key(after) if after else None
            if anchor is not None and start > 0 and (
                    not keys or keys[0] > anchor):
                # rows moved back past the window: step back and look again
                skip = max(0, start - self.page_size)
                continue
            new = [r for r, k in zip(rows, keys)
                   if anchor is None or k > anchor]
            if not new and not last:
                skip = start + len(rows)  # rows moved forward
                continue
            upto = new[-1]['id'] if new else after
            skip = start + len(rows) if last else \
                start + keys.index(self.order_key(upto)) + 1
            yield Page(new, None if last else dump_cursor(after=upto,
                                                          skip=skip),
                       {'skip': start}, after=after, upto=upto, last=last)
            if last:
                return
            after = upto

    def _fetch(self, path, ids):
        rows = []
        for external_id in ids:
            try:
                rows.append(self.get(f'{path}/{external_id}'))
            except HubError as exc:
                if 'HTTP 404' not in str(exc):
                    raise
        return [r for r in rows if isinstance(r, dict)]

    def fetch_items(self, ids):
        return self._fetch('verkoopfacturen', ids)

    def fetch_debtors(self, ids):
        return self._fetch('relaties', ids)

    def _countries(self):
        """{land id: two-letter code}: ``landen`` is small and ignores
        $filter, so it is read once."""
        if self._landen is None:
            rows = self.get('landen')
            self._landen = {}
            for land in rows if isinstance(rows, list) else []:
                code = land.get('landcode') or land.get('landcodeISO')
                if land.get('id') and isinstance(code, str) and \
                        len(code) == 2:
                    self._landen[land['id']] = code.upper()
        return self._landen

    # -- mapping -------------------------------------------------------
    def map(self, stream, records):
        mapper = {'debtors': self.map_debtor,
                  'open_items': self.map_item}[stream]
        out = []
        for row in records:
            try:
                record = mapper(row) if isinstance(row, dict) else None
            except (ValueError, TypeError, KeyError) as exc:
                log.warning('SnelStart %s row left out: %s', stream, exc)
                continue
            if isinstance(record, list):
                out.extend(record)
            elif record is not None:
                out.append(record)
        return out

    def map_debtor(self, row):
        kinds = row.get('relatiesoort') or []
        if kinds and 'Klant' not in kinds:
            return None
        adres = row.get('vestigingsAdres') or row.get(
            'correspondentieAdres') or {}
        land = (adres.get('land') or {}).get('id')
        business = bool(row.get('kvkNummer') or row.get('btwNummer'))
        return Debtor(
            external_id=str(row['id']),
            name=row.get('naam') or str(row.get('relatiecode') or row['id']),
            kind='business' if business else 'consumer',
            email=row.get('email') or None,
            phone=row.get('telefoon') or None,
            street=adres.get('straat') or None,
            postal_code=adres.get('postcode') or None,
            city=adres.get('plaats') or None,
            country=self._countries().get(land) if land else None,
            vat_number=row.get('btwNummer') or None,
            coc_number=row.get('kvkNummer') or None)

    @staticmethod
    def map_item(row):
        """The invoice and, when something was paid on it, its cumulative
        payment."""
        relatie = row.get('relatie') or {}
        invoice_date = parse_date(row.get('factuurDatum'))
        due = parse_date(row.get('vervalDatum')) or invoice_date
        if due is None:
            raise ValueError('invoice without due date')
        amount = parse_decimal(row.get('factuurBedrag')) or Decimal(0)
        open_amount = parse_decimal(row.get('openstaandSaldo'))
        if open_amount is None:
            open_amount = amount
        number = str(row.get('factuurnummer') or '')
        description = (f'Creditnota / credit note {number}' if amount < 0
                       else f'Factuur {number}')
        item = OpenItem(
            external_id=str(row['id']), debtor=str(relatie['id']),
            number=number, description=description,
            invoice_date=invoice_date, due_date=due, currency='EUR',
            amount=amount, open_amount=open_amount)
        paid = amount - open_amount
        if amount <= 0 or paid == 0:
            return item
        date = parse_date(row.get('modifiedOn')) or dt.date.today()
        return [item, Payment(external_id=f'{row["id"]}:paid',
                              item=str(row['id']), date=date, amount=paid)]
