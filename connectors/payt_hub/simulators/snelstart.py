"""SnelStart B2B API v2 simulator (token endpoint + REST, OData subset).

Routes: ``POST /b2b/token`` (form grant_type=clientkey&clientkey=...),
``GET /v2/relaties``, ``/v2/relaties/{id}``, ``/v2/verkoopfacturen``,
``/v2/verkoopfacturen/{id}``, ``/v2/bankboekingen``, ``/v2/landen``.
Listings come in a stable order of ``id`` (the API documents no order and
no ``$orderby``; the adapter checks the order it relies on). A relatie's
address names its country as ``land {id, uri}``, a ``landen`` record
(``id, naam, landcode, landcodeISO, uri``). Every /v2 call needs
``Authorization: Bearer`` and ``Ocp-Apim-Subscription-Key``. OData:
``$filter`` (``ModifiedOn gt datetime'...'``, ``OpenstaandSaldo ne 0``,
joined with ``and``; property names case-sensitive; anything else is
``400 [{"errorCode": "ALG-0104", "message": "Ongeldig OData filter"}]``),
``$top`` (max 500), ``$skip``.

Control API (POST JSON /_control/<action>): ``fail`` (mode: 500, 429,
timeout, malformed, long_strings, expire_token; count, op, retry_after,
seconds, key=primary|secondary), ``reset_failures``, ``pay`` {id or
factuurnummer, amount?}, ``add_invoice`` {relatie_id, amount},
``modify_relatie`` {id, naam?, email?}, ``credit`` {id, amount?},
``delete_invoice`` {id}, ``change_invoice`` {id, days?}, ``schedule``
{changes: [[at, kind, seed], ...]}, ``expire_tokens``, ``state``.
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
from urllib.parse import parse_qs

from .server import BaseSimulator, json_response, read_body, response

CLIENT_KEY = 'sim-koppelsleutel-0001'
PRIMARY_KEY = 'sim-subscription-primary'
SECONDARY_KEY = 'sim-subscription-secondary'
ODATA_ERROR = [{'errorCode': 'ALG-0104', 'message': 'Ongeldig OData filter'}]
_NAMES = ['Jansen', 'de Vries', 'Bakker', 'Visser', 'Smit', 'Meijer',
          'de Boer', 'Mulder', 'de Groot', 'Bos', 'Vos', 'Peters']
LANDEN = [{'id': str(uuid.UUID(int=n, version=4)), 'naam': naam,
           'landcode': code, 'landcodeISO': iso,
           'uri': f'/landen/{uuid.UUID(int=n, version=4)}'}
          for n, (naam, code, iso) in enumerate(
              [('Nederland', 'NL', 'NLD'), ('België', 'BE', 'BEL'),
               ('Duitsland', 'DE', 'DEU')], start=1)]
_FILTER = re.compile(
    r"^(ModifiedOn) gt datetime'([0-9T:.\-]+)'$|^(OpenstaandSaldo) ne 0$")


def _now():
    return dt.datetime.now().strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]


class _Encoder(json.JSONEncoder):
    def default(self, o):
        if isinstance(o, Decimal):
            return float(o)  # the wire format is a JSON number
        return super().default(o)


class SnelstartSimulator(BaseSimulator):
    def __init__(self, debtors=20, items=50, seed=1, client_keys=None,
                 subscription_keys=None, token_ttl=3599):
        super().__init__()
        self.client_keys = set(client_keys or [CLIENT_KEY])
        self.subscription_keys = dict(subscription_keys or {
            PRIMARY_KEY: 'primary', SECONDARY_KEY: 'secondary'})
        self.token_ttl = token_ttl
        self.tokens: dict[str, float] = {}
        self.token_requests = 0
        self.keys_used: list[str] = []
        self.relaties: dict[str, dict] = {}
        self.facturen: dict[str, dict] = {}
        # Sorted, filtered listings per (resource, $filter), valid until the
        # data changes: paging through 100k invoices must not sort them
        # again for every page of 500.
        self._version = 0
        self._listings: dict = {}
        self._rng = random.Random(seed)
        self._seed(int(debtors), int(items))

    def _uuid(self):
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _seed(self, n_debtors, n_items):
        rng = self._rng
        base = dt.datetime.now() - dt.timedelta(days=30)
        for n in range(n_debtors):
            rid = self._uuid()
            business = n % 3 != 0
            name = f'{rng.choice(_NAMES)}{" BV" if business else ""}'
            self.relaties[rid] = {
                'id': rid, 'relatiecode': 1001 + n,
                'relatiesoort': ['Klant'], 'naam': name,
                'vestigingsAdres': self._adres(n, LANDEN[n % 7 == 6]),
                'correspondentieAdres': None,
                'email': f'klant{1001 + n}@example.nl',
                'telefoon': '+31201234567',
                'btwNummer': f'NL{rng.randrange(10**8, 10**9)}B01'
                if business else None,
                'kvkNummer': str(rng.randrange(10**7, 10**8))
                if business else None,
                'krediettermijn': 30, 'kredietLimiet': Decimal('5000.00'),
                'iban': None, 'nonactief': False,
                'modifiedOn': (base + dt.timedelta(seconds=n)).strftime(
                    '%Y-%m-%dT%H:%M:%S.%f')[:-3]}
        ids = sorted(self.relaties)
        for n in range(n_items):
            self._new_invoice(rng.choice(ids),
                              Decimal(rng.randrange(2500, 250000)) / 100,
                              (base - dt.timedelta(days=rng.randrange(1, 200)
                                                   )).date(),
                              modified=(base + dt.timedelta(
                                  minutes=n + 1)).strftime(
                                  '%Y-%m-%dT%H:%M:%S.%f')[:-3])
        for n, f in enumerate(self.facturen.values()):
            if n % 7 == 3:  # partly paid
                f['openstaandSaldo'] = (f['factuurBedrag'] / 2).quantize(
                    Decimal('0.01'))
            elif n % 11 == 5:  # paid in full before the first sync
                f['openstaandSaldo'] = Decimal('0.00')
            elif n % 17 == 9:  # a credit note (negative invoice)
                f['factuurBedrag'] = f['openstaandSaldo'] = -Decimal('60.50')

    @staticmethod
    def _adres(n, land):
        return {'contactpersoon': None, 'straat': f'Kerkstraat {n + 1}',
                'postcode': '1012 AB', 'plaats': 'Amsterdam',
                'land': {'id': land['id'], 'uri': land['uri']}}

    def _new_invoice(self, relatie_id, amount, date, modified=None):
        fid = self._uuid()
        self._version += 1
        number = str(20260001 + len(self.facturen))
        amount = Decimal(amount).quantize(Decimal('0.01'))
        self.facturen[fid] = {
            'id': fid, 'factuurnummer': number,
            'factuurDatum': f'{date.isoformat()}T00:00:00',
            'vervalDatum': f'{(date + dt.timedelta(days=30)).isoformat()}'
                           'T00:00:00',
            'factuurBedrag': amount, 'openstaandSaldo': amount,
            'relatie': {'id': relatie_id,
                        'uri': f'/relaties/{relatie_id}'},
            'verkoopBoeking': {'id': fid,
                               'uri': f'/verkoopboekingen/{fid}'},
            'modifiedOn': modified or _now()}
        return fid

    # -- control -------------------------------------------------------
    def _factuur(self, id=None, factuurnummer=None):
        if id:
            return self.facturen[id]
        for f in self.facturen.values():
            if f['factuurnummer'] == str(factuurnummer):
                return f
        raise KeyError(f'unknown invoice {factuurnummer}')

    def pay(self, id=None, factuurnummer=None, amount=None):
        with self.lock:
            time.sleep(0.002)  # distinct modifiedOn
            f = self._factuur(id, factuurnummer)
            amount = f['openstaandSaldo'] if amount is None else \
                Decimal(str(amount))
            f['openstaandSaldo'] -= amount
            f['modifiedOn'] = _now()
            self._version += 1
            return {'id': f['id'], 'openstaandSaldo': str(
                f['openstaandSaldo'])}

    def add_invoice(self, relatie_id, amount, date=None):
        with self.lock:
            time.sleep(0.002)
            date = dt.date.fromisoformat(date) if date else dt.date.today()
            return {'id': self._new_invoice(relatie_id,
                                            Decimal(str(amount)), date)}

    def modify_relatie(self, id, **fields):
        with self.lock:
            time.sleep(0.002)
            rel = self.relaties[id]
            for key, value in fields.items():
                if key not in rel or key in ('id', 'modifiedOn'):
                    raise KeyError(f'unknown relatie field {key}')
                rel[key] = value
            rel['modifiedOn'] = _now()
            self._version += 1
            return {'id': id}

    def expire_tokens(self):
        with self.lock:
            self.tokens.clear()
        return {'ok': True}

    def credit(self, id, amount=None):
        """A credit note (a negative invoice; SnelStart does not say which
        invoice it credits) for the relatie of invoice ``id``."""
        with self.lock:
            time.sleep(0.002)
            f = self.facturen[id]
            amount = f['openstaandSaldo'] if amount is None else \
                Decimal(str(amount))
            return {'id': self._new_invoice(f['relatie']['id'], -amount,
                                            dt.date.today())}

    def delete_invoice(self, id):
        with self.lock:
            del self.facturen[id]
            self._version += 1
            return {'id': id}

    def change_invoice(self, id, days=7):
        with self.lock:
            time.sleep(0.002)
            f = self.facturen[id]
            due = dt.date.fromisoformat(f['vervalDatum'][:10]) + \
                dt.timedelta(days=int(days))
            f['vervalDatum'] = f'{due.isoformat()}T00:00:00'
            f['modifiedOn'] = _now()
            self._version += 1
            return {'id': id}

    def add_relatie(self):
        with self.lock:
            rid = self._uuid()
            n = len(self.relaties)
            self.relaties[rid] = {
                'id': rid, 'relatiecode': 1001 + n,
                'relatiesoort': ['Klant'], 'naam': f'Nieuwe klant {n}',
                'vestigingsAdres': self._adres(n, LANDEN[0]),
                'correspondentieAdres': None, 'email': None,
                'telefoon': None, 'btwNummer': None, 'kvkNummer': None,
                'krediettermijn': 30, 'kredietLimiet': Decimal('0.00'),
                'iban': None, 'nonactief': False, 'modifiedOn': _now()}
            self._version += 1
            return {'id': rid}

    def random_change(self, rng, kind):
        """One change of ``kind`` (add, pay, credit, change, delete) chosen
        with ``rng``; returns the ids of the invoices it touched."""
        with self.lock:
            # (in insertion order: deterministic, and no sort of 100k rows)
            ids = [i for i, f in self.facturen.items()
                   if f['openstaandSaldo'] > 0]
            if kind == 'add' or not ids:
                relatie = (self.add_relatie()['id'] if rng.random() < 0.3
                           else rng.choice(list(self.relaties)))
                return [self.add_invoice(relatie, Decimal(
                    rng.randrange(1000, 90000)) / 100)['id']]
            fid = rng.choice(ids)
            saldo = self.facturen[fid]['openstaandSaldo']
            if kind == 'pay':
                self.pay(id=fid, amount=rng.choice(
                    [None, (saldo / 3).quantize(Decimal('0.01'))]))
            elif kind == 'credit':
                return [self.credit(fid, (saldo / 2).quantize(
                    Decimal('0.01')))['id']]
            elif kind == 'change':
                self.change_invoice(fid, rng.randrange(1, 30))
            else:
                self.delete_invoice(fid)
            return [fid]

    def open_view(self):
        """{id: (open amount, currency)} as the ERP must show it."""
        with self.lock:
            return {f['id']: (str(f['openstaandSaldo']), 'EUR')
                    for f in self.facturen.values()
                    if f['openstaandSaldo'] != 0}

    def open_items(self):
        return {k: v for k, (v, _) in self.open_view().items()}

    def state(self):
        return {'debtors': sorted(self.relaties),
                'open_items': self.open_items()}

    control_pay = pay
    control_add_invoice = add_invoice
    control_expire_tokens = expire_tokens
    control_credit = credit
    control_delete_invoice = delete_invoice
    control_change_invoice = change_invoice

    def control_modify_relatie(self, id, **fields):
        return self.modify_relatie(id, **fields)

    def control_state(self):
        return self.state()

    # -- HTTP ----------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        method = environ['REQUEST_METHOD']
        if path.startswith('/_control/') and method == 'POST':
            return self.control(environ, start_response,
                                path[len('/_control/'):])
        self.requests.append(f'{method} {path}')
        key = environ.get('HTTP_OCP_APIM_SUBSCRIPTION_KEY')
        if key:
            self.keys_used.append(self.subscription_keys.get(key, '?'))
        failure = self.take_failure(
            path, key=self.subscription_keys.get(key))
        if self.sleep_if_timeout(failure):
            failure = None
        mode = failure and failure['mode']
        if mode == '500':
            return json_response(start_response, '500 Internal Server Error',
                                 {'Message': 'An error has occurred.'})
        if mode == '429':
            return json_response(
                start_response, '429 Too Many Requests',
                {'statusCode': 429,
                 'message': 'Rate limit is exceeded. Try again later.'},
                [('Retry-After', str(failure.get('retry_after') or 1))])
        if mode == 'malformed':
            return response(start_response, '200 OK', '[{"id": "abc", "na',
                            'application/json; charset=utf-8')
        if mode == 'expire_token':
            self.expire_tokens()
        if path == '/b2b/token' and method == 'POST':
            return self.token(environ, start_response)
        if not path.startswith('/v2/') or method != 'GET':
            return json_response(start_response, '404 Not Found',
                                 {'Message': 'Resource not found'})
        if key not in self.subscription_keys:
            return json_response(
                start_response, '401 Access Denied',
                {'statusCode': 401, 'message': 'Access denied due to invalid'
                 ' subscription key. Make sure to provide a valid key for an'
                 ' active subscription.'})
        auth = environ.get('HTTP_AUTHORIZATION', '')
        token = auth[7:] if auth.startswith('Bearer ') else None
        with self.lock:
            expires = self.tokens.get(token)
        if not expires or expires < time.time():
            return json_response(start_response, '401 Unauthorized',
                                 {'Message': 'Authorization has been denied '
                                  'for this request.'})
        query = parse_qs(environ.get('QUERY_STRING', ''),
                         keep_blank_values=True)
        parts = path[len('/v2/'):].strip('/').split('/')
        source = {'relaties': self.relaties, 'verkoopfacturen':
                  self.facturen, 'bankboekingen': {},
                  'landen': {l['id']: l for l in LANDEN}}.get(parts[0])
        if source is None:
            return json_response(start_response, '404 Not Found',
                                 {'Message': 'Resource not found'})
        if len(parts) == 2:
            with self.lock:
                rec = source.get(parts[1])
            if rec is None:
                return json_response(start_response, '404 Not Found', [
                    {'errorCode': 'ALG-0404', 'message':
                     'Het opgevraagde object bestaat niet'}])
            return self._send(start_response, rec, mode)
        try:
            filter_text = query.get('$filter', [''])[0]
            predicates = self._parse_filter(filter_text)
            top = min(int(query.get('$top', ['500'])[0]), 500)
            skip = int(query.get('$skip', ['0'])[0])
        except ValueError:
            return json_response(start_response, '400 Bad Request',
                                 ODATA_ERROR)
        if parts[0] == 'landen':  # ignores $filter, $top, $skip
            return self._send(start_response, LANDEN, None)
        self.tick()
        with self.lock:
            key = (parts[0], filter_text, self._version)
            if key not in self._listings:
                self._listings = {k: v for k, v in self._listings.items()
                    if k[2] == self._version}
                self._listings[key] = [r for r in sorted(
                        source.values(), key=lambda r: r['id'])
                    if all(p(r) for p in predicates)]
            rows = [dict(r) for r in self._listings[key][skip: skip + top]]
        if mode == 'long_strings':
            for r in rows:
                for k in ('naam', 'factuurnummer'):
                    if k in r:
                        r[k] = 'A' * 100_000
        return self._send(start_response, rows, None)

    def _send(self, start_response, data, mode):
        return response(start_response, '200 OK',
                        json.dumps(data, cls=_Encoder),
                        'application/json; charset=utf-8')

    @staticmethod
    def _parse_filter(text):
        predicates = []
        if not text.strip():
            return predicates
        for clause in re.split(r'\s+and\s+', text.strip()):
            m = _FILTER.match(clause.strip())
            if not m:
                raise ValueError(clause)
            if m.group(1):
                since = m.group(2)
                dt.datetime.fromisoformat(since)  # ValueError -> ALG-0104
                predicates.append(lambda r, s=since: r['modifiedOn'] > s)
            else:
                predicates.append(lambda r: r.get('openstaandSaldo', 0) != 0)
        return predicates

    def token(self, environ, start_response):
        form = parse_qs(read_body(environ).decode('utf-8', 'replace'))
        self.token_requests += 1
        if form.get('grant_type', [''])[0] != 'clientkey':
            return json_response(start_response, '400 Bad Request',
                                 {'error': 'unsupported_grant_type'})
        if form.get('clientkey', [''])[0] not in self.client_keys:
            return json_response(start_response, '400 Bad Request',
                                 {'error': 'invalid_grant',
                                  'error_description':
                                  'De koppelsleutel is ongeldig.'})
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.time() + self.token_ttl
        return json_response(start_response, '200 OK', {
            'access_token': token, 'token_type': 'bearer',
            'expires_in': self.token_ttl})
