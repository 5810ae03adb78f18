"""Exact Online simulator: OAuth 2.0 authorization code with rotating
refresh tokens, and the REST/OData v2 resources the hub reads.

OAuth (``/api/oauth2/...``):

* ``GET /api/oauth2/auth?client_id=&redirect_uri=&response_type=code``
  stands for the user who logs in to Exact and approves the app: it
  redirects (302) to ``redirect_uri?code=...``. ``POST /_control/authorize``
  returns such a code directly.
* ``POST /api/oauth2/token`` (form): ``grant_type=authorization_code``
  (``code``, ``redirect_uri``, ``client_id``, ``client_secret``) or
  ``grant_type=refresh_token`` (``refresh_token``, ``client_id``,
  ``client_secret``) answers ``{access_token, token_type: "bearer",
  expires_in: "600", refresh_token}``. Every refresh returns a NEW refresh
  token and the old one stops working (``400 {"error": "invalid_grant"}``);
  codes are single use; access tokens live 10 minutes (``token_ttl``).

REST (``Authorization: Bearer``, ``Accept: application/json``):

* ``GET /api/v1/current/Me`` -> ``{"d": {"results": [{"CurrentDivision":
  ..., "UserID": ...}]}}``
* ``GET /api/v1/{division}/read/financial/ReceivablesList``: the open
  receivables (``HID, AccountId, AccountCode, AccountName, Amount,
  AmountInTransit, CurrencyCode, Description, DueDate, EntryNumber, ID,
  InvoiceDate, InvoiceNumber, JournalCode, JournalDescription, YourRef``),
  ordered by ``HID``; paid, fully credited and deleted entries are simply
  no longer listed.
  ``$filter=HID eq 12 or HID eq 15`` reads entries by id (those no
  longer open are simply not returned).
* ``GET /api/v1/{division}/sync/CRM/Accounts?$filter=Timestamp gt 0L``:
  accounts in ``Timestamp`` order (a row version raised by every change).
* ``GET /api/v1/{division}/crm/Accounts?$filter=ID eq guid'...' or ...``:
  accounts by id.

Pages hold ``page_size`` rows (default 1000) in ``{"d": {"results": [...],
"__next": "<url>"}}``; ``__next`` carries ``$skiptoken`` = the last key, so
paging is keyset and nothing shifts when rows come or go. Dates are
``/Date(<ms>)/``. At most ``rate_limit`` calls per ``rate_window`` seconds
(default 60 per 60) per client and division; beyond it ``429`` with
``X-RateLimit-Minutely-Remaining`` / ``-Reset`` (ms since the epoch). Errors:
``{"error": {"code": "", "message": {"lang": "", "value": "..."}}}``.

Control API (POST JSON /_control/<action>): ``authorize``, ``fail`` (500,
429, timeout; ``op`` a path part), ``pay`` {hid, amount?}, ``add_invoice``
{account, amount, currency?}, ``credit`` {hid}, ``delete`` {hid},
``modify_account`` {id, name?, email?}, ``expire_tokens``, ``state``,
``schedule`` {changes: [[at, kind, seed], ...]}: seeded changes (add, pay,
credit, change, delete) applied at those data requests, as for the other
simulators (``BaseSimulator.tick``).
"""
from __future__ import annotations

import datetime as dt
import json
import random
import re
import secrets
import time
import uuid
from decimal import Decimal
from urllib.parse import parse_qs, urlencode

from .server import BaseSimulator, json_response, read_body, response

CLIENT_ID = '3f2a3b1c-0000-4000-8000-00000000e8ac'
CLIENT_SECRET = 'sim-exact-client-secret'
REDIRECT_URI = 'https://payt.example/exact/callback'
DIVISION = 1234567
#: the $filter forms the hub sends to read by id: ``HID eq 12`` and
#: ``ID eq guid'...'``, joined by ``or``
_BY_ID = re.compile(r"^(HID|ID) eq (?:(\d+)|guid'([0-9a-fA-F-]{36})')$")
_NAMES = ['Jansen', 'de Vries', 'Bakker', 'Visser', 'Smit', 'Meijer',
          'de Boer', 'Mulder', 'de Groot', 'Bos', 'Vos', 'Peters']


def parse_sim_date(text: str) -> dt.date:
    millis = int(text[len('/Date('):].split(')')[0])
    return dt.date(1970, 1, 1) + dt.timedelta(milliseconds=millis)


def odata_date(value: dt.date) -> str:
    epoch = dt.datetime(1970, 1, 1)
    moment = dt.datetime.combine(value, dt.time())
    return f'/Date({int((moment - epoch).total_seconds() * 1000)})/'


class _Encoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, Decimal):
            return float(o)  # the wire format is a JSON number
        return super().default(o)


def _error(start_response, status, text, headers=()):
    body = json.dumps({'error': {'code': '', 'message': {
        'lang': 'en-US', 'value': text}}})
    return response(start_response, status, body,
                    'application/json; charset=utf-8', headers)


class ExactSimulator(BaseSimulator):
    def __init__(self, debtors=20, items=50, seed=1, page_size=1000,
                 token_ttl=600, rate_limit=60, rate_window=60.0,
                 currencies=('EUR',)):
        super().__init__()
        self.page_size = int(page_size)
        self.token_ttl = token_ttl
        self.rate_limit, self.rate_window = int(rate_limit), rate_window
        self.codes: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.access_tokens: dict[str, float] = {}
        self.refreshes = 0
        self.calls: list[float] = []     # API calls (not OAuth), times
        self.rejected_429 = 0
        self.accounts: dict[str, dict] = {}
        self.receivables: dict[int, dict] = {}
        self._timestamp = 0
        self._hid = 0
        self._entry = 26000000
        self._rng = random.Random(seed)
        self._seed(int(debtors), int(items), currencies)

    # -- data ----------------------------------------------------------
    def _next_timestamp(self):
        self._timestamp += 1
        return self._timestamp

    def _seed(self, n_debtors, n_items, currencies):
        rng = self._rng
        for n in range(n_debtors):
            aid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            business = n % 3 != 0
            self.accounts[aid] = {
                'ID': aid, 'Code': f'{20001 + n:>18}',
                'Name': f'{rng.choice(_NAMES)}{" BV" if business else ""}',
                'Email': f'debiteur{20001 + n}@example.nl',
                'Phone': '+31301234567',
                'AddressLine1': f'Dorpsstraat {n + 1}',
                'Postcode': '3511 AB', 'City': 'Utrecht', 'Country': 'NL',
                'VATNumber': f'NL{rng.randrange(10**8, 10**9)}B01'
                if business else None,
                'ChamberOfCommerce': str(rng.randrange(10**7, 10**8))
                if business else None,
                'Language': 'NL', 'IsSales': True, 'Status': 'C',
                'Timestamp': self._next_timestamp()}
        ids = sorted(self.accounts)
        today = dt.date.today()
        for n in range(n_items):
            self.add_invoice(rng.choice(ids),
                             Decimal(rng.randrange(2500, 250000)) / 100,
                             currency=currencies[n % len(currencies)],
                             invoice_date=today - dt.timedelta(
                                 days=rng.randrange(1, 120)))

    def add_invoice(self, account, amount, currency='EUR', invoice_date=None,
                    description=None):
        with self.lock:
            acc = self.accounts[account]
            self._hid += 1
            self._entry += 1
            date = invoice_date or dt.date.today()
            amount = Decimal(str(amount)).quantize(Decimal('0.01'))
            self.receivables[self._hid] = {
                'HID': self._hid, 'ID': str(uuid.UUID(
                    int=self._rng.getrandbits(128), version=4)),
                'AccountId': account, 'AccountCode': acc['Code'],
                'AccountName': acc['Name'], 'Amount': amount,
                'AmountInTransit': Decimal('0.00'), 'CurrencyCode': currency,
                'Description': description or
                f'{"Creditnota" if amount < 0 else "Factuur"} {self._entry}',
                'DueDate': odata_date(date + dt.timedelta(days=30)),
                'EntryNumber': self._entry, 'InvoiceDate': odata_date(date),
                'InvoiceNumber': self._entry, 'JournalCode': '70',
                'JournalDescription': 'Verkoopboek',
                'YourRef': f'PO-{self._entry}'}
            return self._hid

    def open_items(self):
        """{HID as text: open amount as text} as the hub should end up."""
        with self.lock:
            return {str(h): f'{r["Amount"]:.2f}'
                    for h, r in self.receivables.items()}

    # -- control ---------------------------------------------------------
    def control_authorize(self):
        code = 'sim-code-' + secrets.token_urlsafe(24)
        with self.lock:
            self.codes.add(code)
        return {'code': code}

    def authorize(self):
        return self.control_authorize()['code']

    def control_pay(self, hid, amount=None):
        with self.lock:
            row = self.receivables[int(hid)]
            rest = row['Amount'] - Decimal(str(amount if amount is not None
                                                else row['Amount']))
            if rest == 0:
                del self.receivables[int(hid)]  # paid: no longer listed
            else:
                row['Amount'] = rest
        return {'hid': int(hid), 'open': str(rest)}

    def control_add_invoice(self, account, amount, currency='EUR'):
        return {'hid': self.add_invoice(account, Decimal(str(amount)),
                                        currency)}

    def control_credit(self, hid):
        "A credit note for the whole invoice: both leave the list."
        with self.lock:
            self.receivables.pop(int(hid))
        return {'hid': int(hid)}

    def control_delete(self, hid):
        with self.lock:
            self.receivables.pop(int(hid))
        return {'hid': int(hid)}

    def control_change(self, hid, days=7):
        "The due date of an entry moved by ``days``."
        with self.lock:
            row = self.receivables[int(hid)]
            due = parse_sim_date(row['DueDate']) + dt.timedelta(days=days)
            row['DueDate'] = odata_date(due)
        return {'hid': int(hid)}

    def add_account(self):
        with self.lock:
            aid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
            n = len(self.accounts)
            self.accounts[aid] = {
                'ID': aid, 'Code': f'{20001 + n:>18}',
                'Name': f'Nieuwe klant {n}', 'Email': None, 'Phone': None,
                'AddressLine1': None, 'Postcode': None, 'City': None,
                'Country': 'NL', 'VATNumber': None,
                'ChamberOfCommerce': None, 'Language': 'NL',
                'IsSales': True, 'Status': 'C',
                'Timestamp': self._next_timestamp()}
            return aid

    def random_change(self, rng, kind):
        """One change of ``kind`` (add, pay, credit, change, delete) chosen
        with ``rng``; returns the HIDs (as text) of the entries touched."""
        with self.lock:
            hids = sorted(h for h, r in self.receivables.items()
                          if r['Amount'] > 0)
            if kind == 'add' or not hids:
                account = (self.add_account() if rng.random() < 0.3
                           else rng.choice(sorted(self.accounts)))
                return [str(self.add_invoice(account, Decimal(
                    rng.randrange(1000, 90000)) / 100))]
            hid = rng.choice(hids)
            row = self.receivables[hid]
            if kind == 'pay':
                self.control_pay(hid, rng.choice(
                    [None, (row['Amount'] / 3).quantize(Decimal('0.01'))]))
            elif kind == 'credit':
                # an unlinked credit note: an entry of its own, negative
                return [str(self.add_invoice(
                    row['AccountId'], -(row['Amount'] / 2).quantize(
                        Decimal('0.01')), row['CurrencyCode']))]
            elif kind == 'change':
                self.control_change(hid, rng.randrange(1, 30))
            else:
                self.control_delete(hid)
            return [str(hid)]

    def open_view(self):
        """{HID as text: (open amount, currency)} as the ERP must show it."""
        with self.lock:
            return {str(h): (f'{r["Amount"]:.2f}', r['CurrencyCode'])
                    for h, r in self.receivables.items() if r['Amount']}

    def control_modify_account(self, id, name=None, email=None):
        with self.lock:
            acc = self.accounts[id]
            if name:
                acc['Name'] = name
            if email:
                acc['Email'] = email
            acc['Timestamp'] = self._next_timestamp()
        return {'id': id}

    def control_expire_tokens(self):
        with self.lock:
            self.access_tokens.clear()
        return {'ok': True}

    def control_state(self):
        return {'open_items': self.open_items(),
                'refreshes': self.refreshes, 'calls': len(self.calls),
                'rejected_429': self.rejected_429}

    # -- OAuth -------------------------------------------------------------
    def _issue(self):
        access = 'sim-access-' + secrets.token_urlsafe(32)
        refresh = 'sim-refresh-' + secrets.token_urlsafe(32)
        self.access_tokens[access] = time.monotonic() + self.token_ttl
        self.refresh_tokens.add(refresh)
        return {'access_token': access, 'token_type': 'bearer',
                'expires_in': str(self.token_ttl), 'refresh_token': refresh}

    def token(self, environ, start_response):
        form = {k: v[0] for k, v in parse_qs(
            read_body(environ).decode()).items()}
        if form.get('client_id') != CLIENT_ID or \
                form.get('client_secret') != CLIENT_SECRET:
            return json_response(start_response, '401 Unauthorized',
                                 {'error': 'invalid_client'})
        grant = form.get('grant_type')
        with self.lock:
            if grant == 'authorization_code':
                if form.get('code') not in self.codes or \
                        form.get('redirect_uri') != REDIRECT_URI:
                    return json_response(start_response, '400 Bad Request',
                                         {'error': 'invalid_grant'})
                self.codes.discard(form['code'])  # single use
            elif grant == 'refresh_token':
                if form.get('refresh_token') not in self.refresh_tokens:
                    return json_response(start_response, '400 Bad Request',
                                         {'error': 'invalid_grant'})
                # rotation: the old refresh token stops working now
                self.refresh_tokens.discard(form['refresh_token'])
                self.refreshes += 1
            else:
                return json_response(start_response, '400 Bad Request',
                                     {'error': 'unsupported_grant_type'})
            return json_response(start_response, '200 OK', self._issue())

    def auth(self, environ, start_response):
        query = {k: v[0] for k, v in parse_qs(
            environ.get('QUERY_STRING', '')).items()}
        if query.get('client_id') != CLIENT_ID:
            return _error(start_response, '400 Bad Request',
                          'unknown client')
        location = f'{query.get("redirect_uri")}?' + urlencode(
            {'code': self.authorize(), 'state': query.get('state', '')})
        return response(start_response, '302 Found', b'', 'text/plain',
                        [('Location', location)])

    # -- REST --------------------------------------------------------------
    def _rate_headers(self, remaining, reset):
        return [('X-RateLimit-Minutely-Limit', str(self.rate_limit)),
                ('X-RateLimit-Minutely-Remaining', str(max(0, remaining))),
                ('X-RateLimit-Minutely-Reset', str(int(reset * 1000)))]

    def _count_call(self):
        "Count this call; the rate headers, or None when over the limit."
        now = time.time()
        with self.lock:
            window = [t for t in self.calls if t > now - self.rate_window]
            reset = (window[0] if window else now) + self.rate_window
            if len(window) >= self.rate_limit:
                self.rejected_429 += 1
                return None, self._rate_headers(0, reset)
            self.calls.append(now)
            return True, self._rate_headers(
                self.rate_limit - len(window) - 1, reset)

    @staticmethod
    def _by_id(query, key):
        """The ids a ``$filter`` on ``key`` asks for (None: no filter);
        ValueError for a filter the simulator does not know."""
        text = query.get('$filter')
        if text is None:
            return None
        wanted = set()
        for part in text.split(' or '):
            match = _BY_ID.match(part.strip())
            if not match or match.group(1) != key:
                raise ValueError(f'unsupported $filter {text[:80]!r}')
            wanted.add(int(match.group(2)) if key == 'HID'
                       else match.group(3).lower())
        return wanted

    def _page(self, environ, rows, key, path, by=None):
        query = {k: v[0] for k, v in parse_qs(
            environ.get('QUERY_STRING', '')).items()}
        if by is not None:
            wanted = self._by_id(query, by)
            if wanted is not None:
                rows = [r for r in rows if r[by] in wanted]
        after = query.get('$skiptoken')
        if after is not None:
            after = int(after) if key != 'ID' else after
            rows = [r for r in rows if r[key] > after]
        page = rows[:self.page_size]
        body = {'results': page}
        if len(rows) > self.page_size:
            rest = {k: v for k, v in query.items() if k != '$skiptoken'}
            rest['$skiptoken'] = str(page[-1][key])
            host = environ.get('HTTP_HOST', 'localhost')
            body['__next'] = f'http://{host}{path}?{urlencode(rest)}'
        return {'d': body}

    def api(self, environ, start_response, path):
        auth = environ.get('HTTP_AUTHORIZATION', '')
        token = auth[7:] if auth.startswith('Bearer ') else None
        with self.lock:
            expiry = self.access_tokens.get(token)
        if expiry is None or expiry < time.monotonic():
            return _error(start_response, '401 Unauthorized',
                          'Access token expired or invalid')
        failure = self.take_failure(path)
        if self.sleep_if_timeout(failure):
            failure = None
        if failure and failure['mode'] == '500':
            return _error(start_response, '500 Internal Server Error',
                          'simulated failure')
        allowed, headers = self._count_call()
        if failure and failure['mode'] == '429':
            allowed = None
        if allowed is None:
            return _error(start_response, '429 Too Many Requests',
                          'API rate limit exceeded', headers)
        if path == '/api/v1/current/Me':
            data = {'d': {'results': [{'CurrentDivision': DIVISION,
                                       'UserID': str(uuid.UUID(int=1))}]}}
        elif path == f'/api/v1/{DIVISION}/read/financial/ReceivablesList':
            self.tick()
            with self.lock:
                rows = [dict(self.receivables[h])
                        for h in sorted(self.receivables)]
            try:
                data = self._page(environ, rows, 'HID', path, by='HID')
            except ValueError as exc:
                return _error(start_response, '400 Bad Request', str(exc))
        elif path == f'/api/v1/{DIVISION}/crm/Accounts':
            self.tick()
            with self.lock:
                rows = [dict(self.accounts[a]) for a in sorted(self.accounts)]
            try:
                data = self._page(environ, rows, 'ID', path, by='ID')
            except ValueError as exc:
                return _error(start_response, '400 Bad Request', str(exc))
        elif path == f'/api/v1/{DIVISION}/sync/CRM/Accounts':
            self.tick()
            query = parse_qs(environ.get('QUERY_STRING', ''))
            since = int((query.get('$filter') or ['Timestamp gt 0L'])[0]
                        .split()[-1].rstrip('L'))
            with self.lock:
                rows = sorted((dict(a) for a in self.accounts.values()
                               if a['Timestamp'] > since),
                              key=lambda a: a['Timestamp'])
            data = self._page(environ, rows, 'Timestamp', path)
        elif path.startswith('/api/v1/'):
            return _error(start_response, '403 Forbidden',
                          'Forbidden: no access to this division')
        else:
            return _error(start_response, '404 Not Found', 'Not found')
        return response(start_response, '200 OK',
                        json.dumps(data, cls=_Encoder),
                        'application/json; charset=utf-8', headers)

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        with self.lock:
            self.requests.append(path)
        if path.startswith('/_control/'):
            return self.control(environ, start_response,
                                path[len('/_control/'):])
        if path == '/api/oauth2/token' and environ['REQUEST_METHOD'] == 'POST':
            return self.token(environ, start_response)
        if path == '/api/oauth2/auth':
            return self.auth(environ, start_response)
        return self.api(environ, start_response, path)
