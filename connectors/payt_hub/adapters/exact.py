"""Exact Online adapter: REST/OData v2 with OAuth 2.0 (authorization code,
rotating refresh tokens), read through httpx.

Settings:
  client_id, client_secret   the app of this product (installation)
  redirect_uri               the app's registered redirect URI
  authorization_code         what the consultant pastes after approving the
                             app in Exact Online (single use), or
  refresh_token              the link's current refresh token (rotating)
  division                   the administration; default the user's
                             CurrentDivision (``/api/v1/current/Me``)
  base_url                   default https://start.exactonline.nl
  rate_limit                 default 55/minute, per client and division,
                             shared by every worker (shared.RateLimit):
                             Exact allows 60; the margin absorbs the time
                             between our count and Exact's
  timeout, attempts, retry_wait

Tokens. An access token lives 10 minutes; each refresh returns a NEW
refresh token and the old one stops working. The new one is handed to
``credentials_saver`` (``Adapter.rotate_credentials``) before the access
token that came with it is used: a sync killed after that resumes with the
stored token; one killed between Exact's answer and the save has lost the
authorization (the old token is dead, the new one unknown), which the next
sync reports as ``authorization_lost``: authorize again in Exact Online.

Streams, both listed whole at every sync (see ``adapters/base.py``):

* ``debtors`` from ``sync/CRM/Accounts``, from ``Timestamp`` 0 through the
  ``__next`` links (keyset on ``Timestamp``, a row version that every
  change raises: an account changed during the pass moves to the end and
  is listed there, so none is skipped). The sync engine does not close
  debtors, so the pages carry no key span. Cursor while a pass is under
  way: {"timestamp": <last Timestamp imported>}.
* ``open_items`` from ``read/financial/ReceivablesList``, the open entries
  only, ordered by ``HID`` (the entry's number, the external id) and paged
  by the ``__next`` links, whose ``$skiptoken`` is the last HID: keyset
  paging, nothing shifts when entries are paid or added meanwhile. Each
  page covers ``after`` < HID <= its last HID (``order_key``: the HID as a
  number). Cursor while a pass is under way: {"after": <last HID>,
  "next": <the __next path>}; None once the pass is complete.

``fetch_items`` asks ``ReceivablesList`` with ``$filter=HID eq ..`` (and
``fetch_debtors`` ``crm/Accounts`` with ``$filter=ID eq guid'..'``), at
most ``FILTER_IDS`` ids a call.

Payments. Exact gives no payment stream here: ``ReceivablesList`` shows
only what is still open (``Amount``), not what was paid nor when, so the
adapter yields no ``Payment`` records. A part payment or part credit shows
as a smaller ``Amount``; an entry paid in full, fully credited or deleted
is no longer listed, and once ``fetch_items`` confirms it is gone the sync
closes it by id (see docs/CONNECTORS-HUB.md, "Exact Online").
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from decimal import Decimal
from urllib.parse import urlsplit

import httpx

from ..canonical import Debtor, OpenItem, parse_decimal
from ..errors import (HubError, LinkError, SourceDataError, TransientError,
                      Unreachable)
from ..retry import retrying
from .base import Adapter, Page, dump_cursor, load_cursor, register

log = logging.getLogger(__name__)

BASE_URL = 'https://start.exactonline.nl'
ACCOUNT_FIELDS = ('ID,Code,Name,Email,Phone,AddressLine1,Postcode,City,'
                  'Country,VATNumber,ChamberOfCommerce,Language,Timestamp')
RECEIVABLE_FIELDS = ('HID,AccountId,AccountCode,AccountName,Amount,'
                     'CurrencyCode,Description,DueDate,EntryNumber,'
                     'InvoiceDate,InvoiceNumber,JournalCode,YourRef')
#: ids per ``$filter=... or ...`` call of fetch_items/fetch_debtors (keeps
#: the URL well under the 2,000 characters proxies allow)
FILTER_IDS = 20
_GUID = re.compile(r'^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$')
_DATE = re.compile(r'^/Date\((-?\d+)(?:[+-]\d+)?\)/$')


def parse_odata_date(value) -> dt.date | None:
    "``/Date(1700000000000)/`` (ms since the epoch, UTC) as a date."
    if not value:
        return None
    match = _DATE.match(str(value))
    if not match:
        raise ValueError(f'not an OData date: {str(value)[:40]!r}')
    return (dt.datetime(1970, 1, 1) +
            dt.timedelta(milliseconds=int(match.group(1)))).date()


def _error_text(resp) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200]
    error = data.get('error') if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = error.get('message')
        if isinstance(message, dict):
            return str(message.get('value'))[:200]
        return str(error.get('code') or message)[:200]
    return str(error or data)[:200]


def _retry_after(resp) -> float | None:
    "Seconds until Exact's minutely window resets (header in ms)."
    reset = resp.headers.get('X-RateLimit-Minutely-Reset')
    try:
        return max(0.0, int(reset) / 1000 - time.time()) if reset else None
    except ValueError:
        return None


@register('exact')
class ExactAdapter(Adapter):
    secret_settings = ('client_secret', 'refresh_token', 'authorization_code')

    def __init__(self, client_id, client_secret, redirect_uri,
                 authorization_code=None, refresh_token=None, division=None,
                 base_url=BASE_URL, rate_limit='55/minute', timeout=30,
                 attempts=5, retry_wait=0.5, **extra):
        super().__init__(client_id=client_id, client_secret=client_secret,
                         redirect_uri=redirect_uri,
                         authorization_code=authorization_code,
                         refresh_token=refresh_token, division=division,
                         base_url=base_url, rate_limit=rate_limit, **extra)
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.base_url = base_url.rstrip('/')
        self.rate_limit = rate_limit
        self.attempts = attempts
        self.retry_wait = retry_wait
        self.http = httpx.Client(timeout=timeout)
        self._token = None
        self._token_expires = 0.0
        self._limiter = None

    def close(self):
        self.http.close()

    @property
    def division(self):
        return self.settings.get('division')

    def limiter(self):
        "The calls of this client to this division, counted in Redis."
        if self._limiter is None:
            from ..shared import RateLimit
            self._limiter = RateLimit('exact', self.rate_limit,
                                      self.client_id, self.division or '')
        return self._limiter

    # -- OAuth ---------------------------------------------------------
    def _grant(self):
        if self.settings.get('refresh_token'):
            return {'grant_type': 'refresh_token',
                    'refresh_token': self.settings['refresh_token']}
        if self.settings.get('authorization_code'):
            return {'grant_type': 'authorization_code',
                    'code': self.settings['authorization_code'],
                    'redirect_uri': self.redirect_uri}
        raise LinkError('this link has no Exact Online authorization: '
                        'approve the app in Exact Online and paste the code',
                        'authorization_required')

    def _new_tokens(self) -> dict:
        form = dict(self._grant(), client_id=self.client_id,
                    client_secret=self.client_secret)
        try:
            resp = self.http.post(f'{self.base_url}/api/oauth2/token',
                                  data=form)
        except httpx.TransportError as exc:
            raise Unreachable(f'Exact Online is unreachable at '
                              f'{self.base_url} ({type(exc).__name__})'
                              ) from None
        if resp.status_code == 401:
            raise LinkError('Exact Online refused the client id or secret '
                            'of this installation', 'wrong_client_key')
        if resp.status_code == 400:
            raise LinkError('Exact Online no longer accepts the '
                            'authorization of this link (code used or '
                            'expired, or access withdrawn): approve the app '
                            'in Exact Online again and paste the new code '
                            f'(Exact says: {_error_text(resp)})',
                            'authorization_lost')
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientError(f'Exact Online token: HTTP '
                                 f'{resp.status_code}', _retry_after(resp))
        if resp.status_code != 200:
            raise HubError(f'Exact Online token: HTTP {resp.status_code}')
        try:
            data = resp.json()
            return {'access_token': data['access_token'],
                    'refresh_token': data['refresh_token'],
                    'expires_in': float(data.get('expires_in') or 600)}
        except (ValueError, KeyError, TypeError):
            raise SourceDataError('Exact Online token: malformed reply'
                                  ) from None

    def _access_token(self):
        if self._token and time.monotonic() < self._token_expires:
            return self._token
        tokens = self._new_tokens()
        # persisted before the access token is used: see the module doc
        self.rotate_credentials(refresh_token=tokens['refresh_token'],
                                authorization_code=None)
        from .. import logsafe
        logsafe.register(tokens['access_token'])
        self._token = tokens['access_token']
        # renew 30 s early: a call must not start with a token about to die
        self._token_expires = time.monotonic() + tokens['expires_in'] - 30
        return self._token

    # -- HTTP ----------------------------------------------------------
    def get(self, path, params=None):
        """GET base_url+path (a path, or a path with query from __next);
        JSON with Decimal numbers; rate limited; retried."""
        def once():
            for attempt in (1, 2):
                headers = {'Authorization': f'Bearer {self._access_token()}',
                           'Accept': 'application/json'}
                self.limiter().wait()
                try:
                    resp = self.http.get(self.base_url + path, params=params,
                                         headers=headers)
                except httpx.TransportError as exc:
                    raise Unreachable(f'Exact Online {path.split("?")[0]}: '
                                      f'network error '
                                      f'({type(exc).__name__})') from None
                if resp.status_code == 401 and attempt == 1:
                    self._token = None  # expired early: refresh once
                    continue
                break
            status = resp.status_code
            if status == 429 or status >= 500:
                raise TransientError(f'Exact Online: HTTP {status}',
                                     _retry_after(resp))
            if status in (401, 403):
                raise LinkError('Exact Online refused access to the '
                                f'administration ({_error_text(resp)})',
                                'rejected')
            if status != 200:
                raise HubError(f'Exact Online: HTTP {status}: '
                               f'{_error_text(resp)}')
            try:
                return json.loads(resp.content, parse_float=Decimal)
            except ValueError:
                raise SourceDataError('Exact Online: malformed JSON reply'
                                      ) from None
        return retrying(self.attempts, self.retry_wait)(once)

    def _results(self, data):
        try:
            body = data['d']
            rows = body['results'] if isinstance(body, dict) else body
            following = body.get('__next') if isinstance(body, dict) else None
        except (KeyError, TypeError):
            raise SourceDataError('Exact Online: reply without "d"') from None
        if not isinstance(rows, list):
            raise SourceDataError('Exact Online: "results" is not a list')
        return rows, self._own_path(following)

    def _own_path(self, url):
        """The path and query of a __next link, only on our own service and
        this division: a reply cannot send the token elsewhere."""
        if not url:
            return None
        parts = urlsplit(url)
        if not parts.path.startswith(f'/api/v1/{self.division}/'):
            raise SourceDataError('Exact Online: __next link outside the '
                                  'division refused')
        return parts.path + (f'?{parts.query}' if parts.query else '')

    # -- interface -----------------------------------------------------
    def validate(self):
        """Get tokens (storing the rotated refresh token) and ask Exact who
        we are; the first time, keep the user's current division."""
        rows, _ = self._results(self.get('/api/v1/current/Me',
                                         {'$select': 'CurrentDivision'}))
        if not rows or not rows[0].get('CurrentDivision'):
            raise LinkError('Exact Online: no current division for this '
                            'user', 'rejected')
        if not self.division:
            self.rotate_credentials(division=int(rows[0]['CurrentDivision']))
            self._limiter = None  # counted per division from now on

    def streams(self):
        return ('debtors', 'open_items')

    def read(self, stream, cursor):
        if not self.division:
            self.validate()
        state = load_cursor(cursor)
        if stream == 'debtors':
            yield from self._read_accounts(int(state.get('timestamp') or 0))
        elif stream == 'open_items':
            yield from self._read_receivables(state.get('after'),
                                              state.get('next'))
        else:
            raise ValueError(f'Exact Online has no stream {stream!r}')

    def _read_accounts(self, since):
        path = f'/api/v1/{self.division}/sync/CRM/Accounts'
        params = {'$filter': f'Timestamp gt {since}L',
                  '$select': ACCOUNT_FIELDS}
        while path:
            rows, following = self._results(self.get(path, params))
            for row in rows:
                since = max(since, int(row.get('Timestamp') or 0))
            # after the last page the cursor is empty: the next sync
            # lists every account again
            yield Page(rows, dump_cursor(timestamp=since) if following
                       else None, last=not following)
            path, params = following, None

    def _read_receivables(self, after, resume):
        # a continuation without its key (a cursor stored by an older
        # hub) starts a new pass: the span of its page would be unknown
        path = resume and after is not None and self._own_path(resume)
        params = None
        if not path:
            after = None  # no continuation stored: a new pass
            path = f'/api/v1/{self.division}/read/financial/ReceivablesList'
            params = {'$select': RECEIVABLE_FIELDS}
        while path:
            rows, following = self._results(self.get(path, params))
            if not rows and following:  # covers nothing: read on
                path, params = following, None
                continue
            upto = str(rows[-1]['HID']) if rows else after
            self._check_order(rows, after)
            yield Page(rows, dump_cursor(after=upto, next=following)
                       if following else None, {'after': after},
                       after=after, upto=upto, last=not following)
            path, params, after = following, None, upto

    def _check_order(self, rows, after):
        """The page's HIDs ascend after ``after``: the key spans the sync
        closes by rest on it, so a listing out of order is an error."""
        keys = [self.order_key(str(r.get('HID'))) for r in rows]
        if after is not None:
            keys.insert(0, self.order_key(after))
        if any(a >= b for a, b in zip(keys, keys[1:])):
            raise SourceDataError('Exact Online: ReceivablesList not in '
                                  'HID order')

    def order_key(self, external_id):
        "HIDs are numbers: listed 9 before 10."
        text = str(external_id)
        return (0, int(text), '') if text.isdigit() else (1, 0, text)

    def _by_id(self, path, key, ids, select, quote):
        "Rows of ``path`` whose ``key`` is one of ``ids`` (gone: left out)."
        rows = []
        ids = list(ids)
        for start in range(0, len(ids), FILTER_IDS):
            chunk = ids[start:start + FILTER_IDS]
            params = {'$filter': ' or '.join(f'{key} eq {quote(i)}'
                                             for i in chunk),
                      '$select': select}
            following = path
            while following:
                found, following = self._results(self.get(following, params))
                rows += found
                params = None
        return rows

    def fetch_items(self, ids):
        if not self.division:
            self.validate()
        ids = [i for i in ids if str(i).isdigit()]  # HIDs only
        return self._by_id(
            f'/api/v1/{self.division}/read/financial/ReceivablesList',
            'HID', ids, RECEIVABLE_FIELDS, str)

    def fetch_debtors(self, ids):
        if not self.division:
            self.validate()
        ids = [i for i in ids if _GUID.match(str(i))]
        return self._by_id(f'/api/v1/{self.division}/crm/Accounts', 'ID',
                           ids, ACCOUNT_FIELDS, lambda i: f"guid'{i}'")

    # -- mapping -------------------------------------------------------
    def map(self, stream, records):
        mapper = {'debtors': self.map_debtor,
                  'open_items': self.map_item}[stream]
        out = []
        for row in records:
            try:
                record = mapper(row) if isinstance(row, dict) else None
            except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                log.warning('Exact Online %s row left out: %s', stream, exc)
                continue
            if record is not None:
                out.append(record)
        return out

    @staticmethod
    def map_debtor(row):
        business = bool(row.get('ChamberOfCommerce') or row.get('VATNumber'))
        return Debtor(
            external_id=str(row['ID']),
            name=row.get('Name') or str(row.get('Code') or '').strip()
            or str(row['ID']),
            kind='business' if business else 'consumer',
            email=row.get('Email') or None, phone=row.get('Phone') or None,
            language=(row.get('Language') or '').lower()[:2] or None,
            street=row.get('AddressLine1') or None,
            postal_code=row.get('Postcode') or None,
            city=row.get('City') or None,
            country=(row.get('Country') or '').strip() or None,
            vat_number=row.get('VATNumber') or None,
            coc_number=row.get('ChamberOfCommerce') or None)

    @staticmethod
    def map_item(row):
        invoice_date = parse_odata_date(row.get('InvoiceDate'))
        due = parse_odata_date(row.get('DueDate')) or invoice_date
        if due is None:
            raise ValueError('entry without due date')
        # Amount is what is still open, in the entry's own currency; the
        # list does not give the original amount
        open_amount = parse_decimal(row['Amount'])
        number = str(row.get('InvoiceNumber') or row.get('EntryNumber') or '')
        kind = 'Creditnota' if open_amount < 0 else 'Factuur'
        description = row.get('Description') or f'{kind} {number}'
        if open_amount < 0 and 'credit' not in description.lower():
            description = f'Creditnota: {description}'
        if row.get('YourRef'):
            description = f'{description} (uw ref. {row["YourRef"]})'
        return OpenItem(
            external_id=str(row['HID']), debtor=str(row['AccountId']),
            number=number, description=description,
            invoice_date=invoice_date, due_date=due,
            currency=row.get('CurrencyCode') or 'EUR',
            amount=open_amount, open_amount=open_amount)
