"""iMUIS Online Cloudswitch simulator: the vendor WSDL, SOAP 1.1 and 1.2.

Serves ``GET /ws1_xml.asmx?WSDL`` (the vendor file unchanged except its
soap:address/soap12:address locations) and answers Login,
GetStamtabelRecords (tables DEB and DEBOPP), KeepSession and Logout. Errors
are in-band: result false plus Foutmelding. Test credentials: PartnerKey
``abcdefghijklmnopqrstuvwxyz``, Omgevingscode ``00000`` (administration
2000).

Control API (POST JSON to /_control/<action>): ``fail`` (mode: 500, 429,
timeout, malformed, xxe, xxe_envelope, billion_laughs, long_strings;
count, op, retry_after, seconds), ``reset_failures``, ``expire_sessions``,
``pay`` {fact, amount?}, ``add_item`` {deb, amount, ...}, ``modify_debtor``
{nr, NAAM?, EMAIL?, ...}, ``add_debtor`` {NAAM, ...}, ``state``.
"""
from __future__ import annotations

import bisect
import datetime as dt
import itertools
import os
import random
import re
from decimal import Decimal
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from lxml import etree

from .server import BaseSimulator, read_body, response

NS = 'https://cloudswitch.imuisonline.com/'
SOAP11 = 'http://schemas.xmlsoap.org/soap/envelope/'
SOAP12 = 'http://www.w3.org/2003/05/soap-envelope'
TEST_PARTNER_KEY = 'abcdefghijklmnopqrstuvwxyz'
TEST_ENVIRONMENT = '00000'
WSDL_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                         'data', 'ws1_xml.wsdl')

DEB_FIELDS = ('NR', 'ZKSL', 'NAAM', 'NAAM2', 'ADRES', 'POSTCD', 'PLAATS',
              'LAND', 'EMAIL', 'TEL', 'BTWNR', 'KVKNR', 'BETCOND', 'KRLIM',
              'SALDO', 'BLOK', 'DATLSTBET')
DEBOPP_FIELDS = ('DEB', 'FACT', 'DAT', 'DATVERV', 'BEDR', 'BEDRBTW', 'BET',
                 'SALDO', 'VAL', 'BEDRVAL', 'SALDOVAL', 'BETVAL', 'KENM',
                 'OMSCHR', 'AANM', 'DATLSTAANM', 'DATLSTBET', 'BETWIST',
                 'VOLDAAN', 'UITHANDEN', 'CREDITNOTADEB', 'CREDITNOTAFACT')
#: EUR per unit of the foreign currencies the simulator books
RATES = {'EUR': Decimal(1), 'USD': Decimal('0.926'), 'GBP': Decimal('1.17')}
CENT = Decimal('0.01')
MSG_PARTNER = 'Ongeldige PartnerKey.'
MSG_ENV = 'Omgevingscode onbekend of app niet geactiveerd in MUIS Apps.'
MSG_SESSION = 'Sessie is verlopen of ongeldig. Log opnieuw in.'

XXE_RECORDS = ('<?xml version="1.0"?><!DOCTYPE NewDataSet [<!ENTITY xxe '
               'SYSTEM "file:///etc/passwd">]><NewDataSet><DEB><NR>&xxe;</NR>'
               '<NAAM>x</NAAM></DEB></NewDataSet>')
LAUGHS_RECORDS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
    + ''.join('<!ENTITY lol%d "%s">' % (i, ('&lol%d;' % (i - 1)) * 10)
              for i in range(1, 10))
    + ']><NewDataSet><DEB><NR>1</NR><NAAM>&lol9;</NAAM></DEB></NewDataSet>')

_NAMES = ['Jansen', 'de Vries', 'Bakker', 'Visser', 'Smit', 'Meijer',
          'de Boer', 'Mulder', 'de Groot', 'Bos', 'Vos', 'Peters']
_CITIES = [('Amsterdam', '1012 JS'), ('Utrecht', '3511 AB'),
           ('Rotterdam', '3011 AA'), ('Zwolle', '8011 CW'),
           ('Groningen', '9711 LM')]


def _d(value: dt.date, style: int) -> str:
    return value.strftime('%d-%m-%Y' if style else '%Y-%m-%d')


def _parse_date(text):
    for fmt in ('%d-%m-%Y', '%Y-%m-%d'):
        try:
            return dt.datetime.strptime(text.strip()[:10], fmt).date()
        except ValueError:
            pass
    return None


class ImuisSimulator(BaseSimulator):
    def __init__(self, debtors=20, items=50, seed=1, partner_keys=None,
                 environments=None, session_idle=1800, today=None):
        super().__init__()
        self.partner_keys = set(partner_keys or [TEST_PARTNER_KEY])
        self.environments = dict(environments or {TEST_ENVIRONMENT: 2000})
        self.session_idle = session_idle
        self.today = today
        self.sessions: dict[str, dt.datetime] = {}
        self._sid = itertools.count(65914)
        self.debtors: dict[str, dict] = {}
        self.items: dict[str, dict] = {}
        self.logins = 0
        # sorted, filtered listings, valid while _version is unchanged:
        # paging through 100k items must not sort them for every page
        self._version = 0
        self._listings: dict = {}
        self._fragments: dict = {}
        self._fragments_version = -1
        self._seed(int(debtors), int(items), seed)

    # -- data ----------------------------------------------------------
    def _today(self):
        return self.today or dt.date.today()

    def _seed(self, n_debtors, n_items, seed):
        rng = random.Random(seed)
        today = self._today()
        for n in range(n_debtors):
            nr = str(10001 + n)
            city, postcode = rng.choice(_CITIES)
            business = n % 3 != 0
            name = f'{rng.choice(_NAMES)} {"BV" if business else ""}'.strip()
            self.debtors[nr] = {
                'NR': nr, 'ZKSL': name.upper()[:10], 'NAAM': name,
                'NAAM2': '', 'ADRES': f'Dorpsstraat {n + 1}',
                'POSTCD': postcode, 'PLAATS': city, 'LAND': 'NL',
                'EMAIL': f'debiteur{nr}@example.nl',
                'TEL': f'+3120{rng.randrange(1000000, 9999999)}',
                'BTWNR': f'NL{rng.randrange(10**8, 10**9)}B01'
                if business else '',
                'KVKNR': str(rng.randrange(10**7, 10**8)) if business else '',
                'BETCOND': '30', 'KRLIM': '5000.00', 'SALDO': '0.00',
                'BLOK': 'false', 'DATLSTBET': '',
                '_MUTDATE': today - dt.timedelta(days=rng.randrange(30, 400)),
            }
        nrs = sorted(self.debtors)
        for n in range(n_items):
            self._new_item(rng.choice(nrs) if nrs else '10001',
                           Decimal(rng.randrange(2500, 250000)) / 100,
                           today - dt.timedelta(days=rng.randrange(20, 300)),
                           mutdate=today - dt.timedelta(
                               days=rng.randrange(5, 20)),
                           number=n + 1,
                           currency='USD' if n % 10 == 7 else 'EUR')
        for n, item in enumerate(list(self.items.values())):
            if n % 7 == 3:  # partly paid
                self._pay(item, (item['BEDRVAL'] / 2).quantize(CENT))
            elif n % 11 == 5:  # paid in full before the first sync
                self._pay(item, item['SALDOVAL'])
            elif n % 13 == 6:  # a credit note booked against it
                self._credit(item, (item['SALDOVAL'] / 4).quantize(CENT))
            elif n % 17 == 9:  # a credit note on nothing in particular
                self._credit(item, Decimal('12.10'), linked=False)
            item['_MUTDATE'] = today - dt.timedelta(days=rng.randrange(5, 20))
        self._recompute()

    def _new_item(self, deb, amount, invoice_date, mutdate=None,
                  number=None, description=None, currency='EUR',
                  credit_for=None):
        number = number or len(self.items) + 1
        fact = f'2026{number:05d}'
        while fact in self.items:
            number += 1
            fact = f'2026{number:05d}'
        amount = Decimal(amount).quantize(CENT)
        self.items[fact] = {
            'DEB': deb, 'FACT': fact, '_DAT': invoice_date,
            '_DATVERV': invoice_date + dt.timedelta(days=30),
            'BEDRVAL': amount, 'BETVAL': Decimal('0.00'),
            'SALDOVAL': amount, 'VAL': currency, 'KENM': f'REF{fact}',
            'OMSCHR': description or f'Factuur {fact}', 'AANM': '0',
            'DATLSTAANM': '', '_DATLSTBET': None, 'BETWIST': 'false',
            'UITHANDEN': 'false', '_MUTDATE': mutdate or self._today(),
            'CREDITNOTADEB': deb if credit_for else '',
            'CREDITNOTAFACT': credit_for or '',
        }
        self._version += 1
        return fact

    @staticmethod
    def _eur(item, field):
        return (item[field] * RATES[item['VAL']]).quantize(CENT)

    def _pay(self, item, amount):
        item['BETVAL'] += amount
        item['SALDOVAL'] -= amount
        item['_DATLSTBET'] = item['_MUTDATE'] = self._today()
        self._version += 1

    def _credit(self, item, amount, linked=True):
        """Book a credit note of ``amount`` (positive) for ``item``'s debtor,
        linked to the item (CREDITNOTAFACT) or not."""
        return self._new_item(
            item['DEB'], -amount, self._today(),
            description=f'Creditnota op {item["FACT"]}' if linked
            else 'Creditnota', currency=item['VAL'],
            credit_for=item['FACT'] if linked else None)

    def _recompute(self):
        totals: dict[str, Decimal] = {}
        for item in self.items.values():
            totals[item['DEB']] = totals.get(item['DEB'], 0) + self._eur(
                item, 'SALDOVAL')
        for nr, deb in self.debtors.items():
            deb['SALDO'] = str(Decimal(totals.get(nr, 0)).quantize(CENT))

    def _row(self, table, rec):
        if table == 'DEB':
            return {k: v for k, v in rec.items() if not k.startswith('_')}
        row = {k: str(v) for k, v in rec.items() if not k.startswith('_')}
        # both date styles appear in real replies
        style = int(rec['FACT'][-1]) if rec['FACT'][-1:].isdigit() else 0
        row['DAT'] = _d(rec['_DAT'], style % 2)
        row['DATVERV'] = _d(rec['_DATVERV'], (style + 1) % 2)
        row['DATLSTBET'] = (_d(rec['_DATLSTBET'], 0)
                            if rec['_DATLSTBET'] else '')
        # BEDR, SALDO, BET in euros; the *VAL fields in the item's currency
        for field in ('BEDR', 'SALDO', 'BET'):
            row[field] = str(self._eur(rec, field + 'VAL'))
        row['BEDRBTW'] = str((self._eur(rec, 'BEDRVAL') * 21 / 121)
                             .quantize(CENT))
        row['VOLDAAN'] = 'true' if rec['SALDOVAL'] == 0 else 'false'
        return row

    # -- what a synced ERP must show -----------------------------------
    def open_view(self):
        """{FACT: (open amount, currency)} as the ERP must show it: a
        credit note linked to an invoice is netted into the invoice."""
        with self.lock:
            net = {}
            for fact, item in self.items.items():
                target = item['CREDITNOTAFACT']
                if target and target in self.items:
                    continue
                net[fact] = item['SALDOVAL']
            for item in self.items.values():
                target = item['CREDITNOTAFACT']
                if target and target in net:
                    net[target] += item['SALDOVAL']
            return {f: (str(v), self.items[f]['VAL'])
                    for f, v in net.items() if v != 0}

    def open_items(self):
        """{FACT: open amount} of open_view (netted, item currency)."""
        return {f: v for f, (v, _) in self.open_view().items()}

    # -- control -------------------------------------------------------
    def pay(self, fact, amount=None):
        with self.lock:
            item = self.items[fact]
            amount = item['SALDOVAL'] if amount is None else \
                Decimal(str(amount))
            self._pay(item, amount)
            self._recompute()
            return {'FACT': fact, 'SALDO': str(item['SALDOVAL'])}

    def add_item(self, deb, amount, description=None, invoice_date=None,
                 currency='EUR'):
        with self.lock:
            date = _parse_date(invoice_date) if invoice_date else \
                self._today()
            fact = self._new_item(deb, Decimal(str(amount)), date,
                                  description=description,
                                  currency=currency)
            self._recompute()
            return {'FACT': fact}

    def credit(self, fact, amount=None, linked=True):
        """A credit note for invoice ``fact`` (default: its open amount)."""
        with self.lock:
            item = self.items[fact]
            amount = item['SALDOVAL'] if amount is None else \
                Decimal(str(amount))
            new = self._credit(item, amount, linked)
            self._recompute()
            return {'FACT': new}

    def delete_item(self, fact):
        with self.lock:
            del self.items[fact]
            for item in self.items.values():  # its credit notes stand alone
                if item['CREDITNOTAFACT'] == fact:
                    item['CREDITNOTAFACT'] = item['CREDITNOTADEB'] = ''
            self._version += 1
            self._recompute()
            return {'FACT': fact}

    def change_item(self, fact, days=7, description=None):
        """Move the due date and change the description (and MUTDATE)."""
        with self.lock:
            item = self.items[fact]
            item['_DATVERV'] += dt.timedelta(days=int(days))
            item['OMSCHR'] = description or f'{item["OMSCHR"]} (gewijzigd)'
            item['_MUTDATE'] = self._today()
            self._version += 1
            return {'FACT': fact}

    def modify_debtor(self, nr, **fields):
        with self.lock:
            deb = self.debtors[nr]
            for key, value in fields.items():
                if key not in DEB_FIELDS or key == 'NR':
                    raise KeyError(f'unknown DEB field {key}')
                deb[key] = str(value)
            deb['_MUTDATE'] = self._today()
            self._version += 1
            return {'NR': nr}

    def add_debtor(self, **fields):
        with self.lock:
            nr = str(max(map(int, self.debtors), default=10000) + 1)
            deb = {k: '' for k in DEB_FIELDS}
            deb.update({k: str(v) for k, v in fields.items()
                        if k in DEB_FIELDS})
            deb.update(NR=nr, NAAM=deb['NAAM'] or f'Nieuw {nr}',
                       SALDO='0.00', _MUTDATE=self._today())
            self.debtors[nr] = deb
            self._version += 1
            return {'NR': nr}

    def random_change(self, rng, kind):
        """One change of ``kind`` (add, pay, credit, change, delete) chosen
        with ``rng``; returns the FACTs of the items it touched."""
        with self.lock:
            # (in insertion order: deterministic, and no sort of 100k rows)
            facts = [f for f, i in self.items.items()
                     if i['SALDOVAL'] > 0 and not i['CREDITNOTAFACT']]
            if kind == 'add' or not facts:
                deb = (self.add_debtor()['NR'] if rng.random() < 0.3
                       else rng.choice(list(self.debtors)))
                return [self.add_item(
                    deb, Decimal(rng.randrange(1000, 90000)) / 100,
                    currency=rng.choice(['EUR', 'EUR', 'USD']))['FACT']]
            fact = rng.choice(facts)
            saldo = self.items[fact]['SALDOVAL']
            if kind == 'pay':
                self.pay(fact, rng.choice([None, (saldo / 3).quantize(CENT)]))
            elif kind == 'credit':
                return [fact, self.credit(fact, (saldo / 2).quantize(CENT),
                                          rng.random() < 0.7)['FACT']]
            elif kind == 'change':
                self.change_item(fact, rng.randrange(1, 30))
            else:
                linked = [f for f, i in self.items.items()
                          if i['CREDITNOTAFACT'] == fact]
                self.delete_item(fact)
                return [fact] + linked
            return [fact]

    def expire_sessions(self):
        with self.lock:
            self.sessions.clear()
        return {'ok': True}

    def state(self):
        with self.lock:
            return {'debtors': sorted(self.debtors),
                    'open_items': self.open_items(),
                    'paid': {f: str(i['BETVAL'])
                             for f, i in self.items.items() if i['BETVAL']}}

    control_pay = pay
    control_add_item = add_item
    control_add_debtor = add_debtor
    control_expire_sessions = expire_sessions
    control_credit = credit
    control_delete_item = delete_item
    control_change_item = change_item

    def control_modify_debtor(self, nr, **fields):
        return self.modify_debtor(nr, **fields)

    def control_state(self):
        return self.state()

    # -- SOAP ----------------------------------------------------------
    def wsdl(self, environ):
        host = environ.get('HTTP_HOST') or f'127.0.0.1:{self.port}'
        with open(WSDL_PATH, encoding='utf-8') as f:
            text = f.read()
        return re.sub(r'(<soap(?:12)?:address location=")[^"]*(")',
                      rf'\g<1>http://{host}/ws1_xml.asmx\g<2>', text)

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        method = environ['REQUEST_METHOD']
        if path.startswith('/_control/') and method == 'POST':
            return self.control(environ, start_response,
                                path[len('/_control/'):])
        query = environ.get('QUERY_STRING', '')
        if method == 'GET':
            if 'wsdl' in (k.lower() for k in parse_qs(
                    query, keep_blank_values=True)):
                return response(start_response, '200 OK', self.wsdl(environ),
                                'text/xml; charset=utf-8')
            return response(start_response, '404 Not Found', 'not found',
                            'text/plain')
        if method != 'POST':
            return response(start_response, '405 Method Not Allowed', '',
                            'text/plain')
        body = read_body(environ)
        ctype = environ.get('CONTENT_TYPE', '')
        soap12 = 'application/soap+xml' in ctype
        env_ns = SOAP12 if soap12 else SOAP11
        parser = etree.XMLParser(resolve_entities=False, no_network=True,
                                 load_dtd=False, huge_tree=False)
        try:
            root = etree.fromstring(body, parser)
            body_el = root.find(f'{{{env_ns}}}Body')
            op_el = body_el[0]
        except Exception:
            return self._fault(start_response, env_ns, 'Client',
                               'Bad SOAP request')
        op = etree.QName(op_el).localname
        params = {etree.QName(c).localname: (c.text or '') for c in op_el
                  if isinstance(c.tag, str)}
        self.requests.append(op)
        failure = self.take_failure(op)
        if self.sleep_if_timeout(failure):
            failure = None
        if failure:
            mode = failure['mode']
            if mode == '500':
                return response(start_response, '500 Internal Server Error',
                                '<html><body>Server Error</body></html>',
                                'text/html')
            if mode == '429':
                return response(start_response, '429 Too Many Requests',
                                'Too many requests', 'text/plain',
                                [('Retry-After',
                                  str(failure.get('retry_after') or 1))])
            if mode == 'malformed':
                return response(start_response, '200 OK',
                                f'<soap:Envelope xmlns:soap="{env_ns}"><soap:Bo',
                                self._ctype(soap12))
            if mode == 'xxe_envelope':
                text = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                        f'"file:///etc/passwd">]><soap:Envelope xmlns:soap='
                        f'"{env_ns}"><soap:Body><{op}Response xmlns="{NS}">'
                        f'<Foutmelding>&e;</Foutmelding></{op}Response>'
                        '</soap:Body></soap:Envelope>')
                return response(start_response, '200 OK', text,
                                self._ctype(soap12))
        handler = getattr(self, f'op_{op}', None)
        if handler is None:
            return self._fault(start_response, env_ns, 'Client',
                               f'Unknown operation {op}')
        result = handler(params, failure)
        return self._reply(start_response, env_ns, soap12, op, result)

    @staticmethod
    def _ctype(soap12):
        return ('application/soap+xml; charset=utf-8' if soap12
                else 'text/xml; charset=utf-8')

    def _reply(self, start_response, env_ns, soap12, op, values):
        parts = []
        for key, value in values:
            if value is None:
                continue
            if isinstance(value, bool):
                value = 'true' if value else 'false'
            parts.append(f'<{key}>{escape(str(value))}</{key}>')
        text = ('<?xml version="1.0" encoding="utf-8"?>'
                f'<soap:Envelope xmlns:soap="{env_ns}" '
                'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>'
                f'<{op}Response xmlns="{NS}">{"".join(parts)}</{op}Response>'
                '</soap:Body></soap:Envelope>')
        return response(start_response, '200 OK', text, self._ctype(soap12))

    def _fault(self, start_response, env_ns, code, message):
        text = (f'<soap:Envelope xmlns:soap="{env_ns}"><soap:Body><soap:Fault>'
                f'<faultcode>soap:{code}</faultcode><faultstring>'
                f'{escape(message)}</faultstring></soap:Fault></soap:Body>'
                '</soap:Envelope>')
        return response(start_response, '500 Internal Server Error', text,
                        'text/xml; charset=utf-8')

    def _check(self, params, session=True):
        if params.get('PartnerKey') not in self.partner_keys:
            return MSG_PARTNER
        if params.get('Omgevingscode') not in self.environments:
            return MSG_ENV
        if session:
            sid = params.get('SessionId')
            now = dt.datetime.now()
            with self.lock:
                last = self.sessions.get(sid)
                if last is None or (now - last).total_seconds() > \
                        self.session_idle:
                    self.sessions.pop(sid, None)
                    return MSG_SESSION
                self.sessions[sid] = now
        return None

    def op_Login(self, params, failure):
        error = self._check(params, session=False)
        if error:
            return [('LoginResult', False), ('Foutmelding', error)]
        admin = self.environments[params['Omgevingscode']]
        with self.lock:
            sid = f'{next(self._sid)}/{admin}@;0'
            self.sessions[sid] = dt.datetime.now()
            self.logins += 1
        return [('LoginResult', True), ('SessionId', sid)]

    def op_KeepSession(self, params, failure):
        error = self._check(params)
        return [('KeepSessionResult', not error), ('Foutmelding', error)]

    def op_Logout(self, params, failure):
        error = self._check(params)
        if not error:
            with self.lock:
                self.sessions.pop(params.get('SessionId'), None)
        return [('LogoutResult', not error), ('Foutmelding', error)]

    def op_GetStamtabelRecords(self, params, failure):
        error = self._check(params)
        if error:
            return [('GetStamtabelRecordsResult', False),
                    ('Foutmelding', error)]
        mode = failure and failure['mode']
        if mode == 'xxe':
            return [('GetStamtabelRecordsResult', True),
                    ('Records', XXE_RECORDS)]
        if mode == 'billion_laughs':
            return [('GetStamtabelRecordsResult', True),
                    ('Records', LAUGHS_RECORDS)]
        self.tick()
        try:
            records = self.select(params.get('Selectie') or '',
                                  long_strings=mode == 'long_strings')
        except ValueError as exc:
            return [('GetStamtabelRecordsResult', False),
                    ('Foutmelding', str(exc))]
        return [('GetStamtabelRecordsResult', True), ('Records', records)]

    def select(self, selectie, long_strings=False):
        parser = etree.XMLParser(resolve_entities=False, no_network=True,
                                 load_dtd=False)
        try:
            t = etree.fromstring(selectie.encode('utf-8'), parser).find(
                'Table1')
        except etree.XMLSyntaxError:
            raise ValueError('Selectie is geen geldige XML.') from None

        def get(tag):
            el = t.find(tag)
            return (el.text or '').strip() if el is not None else ''
        table = get('TABLE').upper()
        if table == 'DEB':
            source, fields_all = self.debtors, DEB_FIELDS
        elif table == 'DEBOPP':
            source, fields_all = self.items, DEBOPP_FIELDS
        else:
            raise ValueError(f'Tabel {table} onbekend of niet toegestaan.')
        fields = [f for f in get('SELECTFIELDS').split(';') if f] or \
            list(fields_all)
        for f in fields:
            if f not in fields_all:
                raise ValueError(f'Veld {f} onbekend in tabel {table}.')
        wf = [x for x in get('WHEREFIELDS').split(';') if x]
        wo = get('WHEREOPERATORS').split(';')
        wv = get('WHEREVALUES').split(';')
        if len(wo) < len(wf) or len(wv) < len(wf):
            raise ValueError('WHEREFIELDS, WHEREOPERATORS en WHEREVALUES '
                             'passen niet bij elkaar.')
        since = get('MUTDATE_VA')
        since_date = _parse_date(since) if since else None
        if since and since_date is None:
            raise ValueError(f'MUTDATE_VA {since} is geen geldige datum.')
        try:
            size = int(get('PAGESIZE') or 10000)
            page = int(get('SELECTPAGE') or 1)
        except ValueError:
            raise ValueError('PAGESIZE/SELECTPAGE ongeldig.') from None
        orderby = get('ORDERBY') or fields_all[0]
        where = list(zip(wf, wo, wv))
        # "ORDERBY field > value" is keyset paging: compared as text, the
        # order of the listing
        keyset = [v for f, o, v in where if f == orderby and o.strip() == '>']
        others = tuple((f, o, v) for f, o, v in where
                       if not (f == orderby and o.strip() == '>'))
        key_field = 'FACT' if table == 'DEBOPP' else 'NR'
        wanted = [v for f, o, v in others if f == key_field and o == '=']
        with self.lock:
            if wanted:  # one record by its key: no listing of the table
                source = {k: source[k] for k in wanted[:1] if k in source}
                keys, listing = self._listing(table, source, orderby,
                                              others, since_date, False)
            else:
                keys, listing = self._listing(table, source, orderby, others,
                                              since_date)
            start = bisect.bisect_right(keys, max(keyset)) if keyset else 0
            if size > 0:
                total_pages = max(1, -(-(len(keys) - start) // size))
                chosen = listing[start + (page - 1) * size:
                                 start + page * size]
            else:
                total_pages, chosen = 1, listing[start:]
            out = ['<NewDataSet><METADATA>'
                   f'<TOTALPAGES>{total_pages}</TOTALPAGES></METADATA>']
            out += [self._data(table, rec, tuple(fields), long_strings)
                    for rec in chosen]
        out.append('</NewDataSet>')
        return ''.join(out)

    def _data(self, table, rec, fields, long_strings=False):
        """One <DATA> row, rendered once per version of the data: a page
        of 1000 rows must not format 19,000 fields again."""
        cache_key = (table, fields, id(rec))
        if not long_strings and self._fragments_version == self._version:
            found = self._fragments.get(cache_key)
            if found is not None:
                return found
        elif self._fragments_version != self._version:
            self._fragments, self._fragments_version = {}, self._version
        row = self._row(table, rec)
        out = ['<DATA>']
        for f in fields:
            value = row.get(f, '')
            if long_strings and f in ('NAAM', 'OMSCHR', 'ADRES'):
                value = 'A' * 100_000
            out.append(f'<{f}>{escape(str(value))}</{f}>')
        out.append('</DATA>')
        text = ''.join(out)
        if not long_strings:
            self._fragments[cache_key] = text
        return text

    def _listing(self, table, source, orderby, where, since_date,
                 cache=True):
        """(sort keys, records) of a table filtered and in ORDERBY order,
        kept until the data changes."""
        cache_key = (table, orderby, where, since_date, self._version)
        found = self._listings.get(cache_key) if cache else None
        if found is None:
            self._listings = {k: v for k, v in self._listings.items()
                              if k[-1] == self._version}
            chosen = []
            for rec in source.values():
                if since_date and rec['_MUTDATE'] < since_date:
                    continue
                if where:
                    row = self._row(table, rec)
                    if not all(self._match(row.get(f), o, v)
                               for f, o, v in where):
                        continue
                chosen.append((str(rec.get(orderby, rec.get(
                    '_' + orderby))), rec))
            chosen.sort(key=lambda pair: pair[0])
            found = ([k for k, _ in chosen], [r for _, r in chosen])
            if cache:
                self._listings[cache_key] = found
        return found

    @staticmethod
    def _match(value, op, target):
        try:
            a, b = Decimal(value), Decimal(target)
        except Exception:
            a, b = str(value), str(target)
        return {'=': a == b, '<>': a != b, '>': a > b, '<': a < b,
                '>=': a >= b, '<=': a <= b}.get(op.strip(), False)
