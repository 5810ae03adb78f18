"""iMUIS Online (Cloudswitch / KING Finance) adapter: zeep on the vendor WSDL.

Settings:
  partner_key    product's PartnerKey (secret)
  environment    administration's Omgevingscode (secret)
  wsdl           WSDL URL or file (default: the vendor WSDL bundled in
                 payt_hub/data, unchanged)
  endpoint       SOAP endpoint overriding the WSDL's soap12:address
                 (default: the address in the WSDL)
  page_size      PAGESIZE (default 1000)
  timeout        seconds per HTTP call (default 30)
  attempts       tries per call on transient errors (default 5)
  retry_wait     first backoff in seconds (default 0.5)

Cursor (JSON): {"since": "YYYY-MM-DD"} after a completed pass, plus
{"page": n, "started": "YYYY-MM-DD"} while a pass is under way. MUTDATE_VA
is a day, "modified on or after": a pass started on day D stores since=D, so
nothing changed during or after the pass is missed; rows changed on day D
are read again by a later pass on day D (the import is idempotent).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
from decimal import Decimal

import requests
from lxml import etree

from ..canonical import Debtor, OpenItem, Payment, parse_date, parse_decimal
from ..errors import (HubError, LinkError, SourceDataError, TransientError,
                      Unreachable)
from ..retry import retrying
from .base import Adapter, Page, dump_cursor, load_cursor, register

log = logging.getLogger(__name__)

NS = 'https://cloudswitch.imuisonline.com/'
PORT = 'ws1_xmlSoap12'
SERVICE = 'ws1_xml'
BUNDLED_WSDL = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                            'data', 'ws1_xml.wsdl')
MAX_RECORDS_CHARS = 64 * 1024 * 1024

DEB_FIELDS = ('NR', 'ZKSL', 'NAAM', 'NAAM2', 'ADRES', 'POSTCD', 'PLAATS',
              'LAND', 'EMAIL', 'TEL', 'BTWNR', 'KVKNR', 'BETCOND', 'KRLIM',
              'SALDO', 'BLOK', 'DATLSTBET')
DEBOPP_FIELDS = ('DEB', 'FACT', 'DAT', 'DATVERV', 'BEDR', 'BEDRBTW', 'BET',
                 'SALDO', 'VAL', 'BEDRVAL', 'SALDOVAL', 'KENM', 'OMSCHR',
                 'AANM', 'DATLSTAANM', 'DATLSTBET', 'BETWIST', 'VOLDAAN',
                 'UITHANDEN')
PAYMENT_FIELDS = ('DEB', 'FACT', 'BET', 'DATLSTBET', 'VAL')

_HOSTILE = re.compile(rb'<!\s*(DOCTYPE|ENTITY)', re.I)
_DECL = re.compile(r'^\s*<\?xml[^>]*\?>')


def safe_parse(text: str | bytes, what='iMUIS Records'):
    """Parse untrusted XML: no DTD, no entities, no network, no huge trees.

    DOCTYPE or ENTITY declarations (XXE, billion laughs) are refused with a
    SourceDataError before lxml sees them.
    """
    if text is None:
        return None
    if isinstance(text, str):
        if len(text) > MAX_RECORDS_CHARS:
            raise SourceDataError(f'{what}: reply too large, refused')
        text = _DECL.sub('', text, count=1).encode('utf-8')
    if _HOSTILE.search(text):
        raise SourceDataError(
            f'{what}: DOCTYPE/ENTITY declaration refused (possible XXE or '
            'entity-expansion attack)')
    parser = etree.XMLParser(resolve_entities=False, no_network=True,
                             huge_tree=False, load_dtd=False,
                             dtd_validation=False, remove_pis=True)
    try:
        root = etree.fromstring(text, parser)
    except etree.XMLSyntaxError as exc:
        raise SourceDataError(f'{what}: malformed XML ({exc})') from None
    if root.getroottree().docinfo.internalDTD is not None:
        raise SourceDataError(f'{what}: DTD refused')
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise SourceDataError(f'{what}: entity reference refused')
    return root


def _bool(value):
    return str(value or '').strip().lower() in ('true', '1', 'j', 'ja', 'y')


def _classify_login(message):
    text = (message or '').lower()
    if 'partner' in text:
        return LinkError('iMUIS refused the partner key: the PartnerKey of '
                         'this product is wrong or revoked '
                         f'(iMUIS says: {message})', 'wrong_partner_key')
    if 'omgeving' in text or 'environment' in text:
        return LinkError('iMUIS does not know this environment code '
                         '(Omgevingscode): check the code pasted from "MUIS '
                         f'Apps" (iMUIS says: {message})',
                         'unknown_environment')
    return LinkError(f'iMUIS login refused: {message or "no reason given"}',
                     'rejected')


def _session_expired(message):
    text = (message or '').lower()
    return 'sessie' in text or 'session' in text


@register('imuis')
class ImuisAdapter(Adapter):
    secret_settings = ('partner_key', 'environment')

    def __init__(self, partner_key, environment, wsdl=None, endpoint=None,
                 page_size=1000, timeout=30, attempts=5, retry_wait=0.5,
                 **extra):
        super().__init__(partner_key=partner_key, environment=environment,
                         wsdl=wsdl, endpoint=endpoint, page_size=page_size,
                         **extra)
        self.partner_key = partner_key
        self.environment = environment
        self.wsdl = wsdl or BUNDLED_WSDL
        self.endpoint = endpoint
        self.page_size = int(page_size)
        self.timeout = timeout
        self.attempts = attempts
        self.retry_wait = retry_wait
        self._service = None
        self._session_id = None

    # -- transport -----------------------------------------------------
    def _client(self):
        if self._service is not None:
            return self._service
        from zeep import Client, Settings
        from zeep.transports import Transport
        session = requests.Session()
        transport = Transport(session=session, timeout=self.timeout,
                              operation_timeout=self.timeout)
        settings = Settings(strict=False, xml_huge_tree=False,
                            forbid_dtd=True, forbid_entities=True,
                            forbid_external=True)
        try:
            client = Client(self.wsdl, transport=transport,
                            settings=settings)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unreachable('iMUIS is unreachable: could not fetch the '
                              f'WSDL from {self.wsdl} '
                              f'({type(exc).__name__})') from None
        except Exception as exc:
            raise LinkError(f'iMUIS WSDL unusable at {self.wsdl}: {exc}',
                            'unreachable') from None
        if self.endpoint:
            self._service = client.create_service(f'{{{NS}}}{PORT}',
                                                  self.endpoint)
        else:
            self._service = client.bind(SERVICE, PORT)
        return self._service

    def _call(self, operation, **params):
        """One SOAP call with retries on transient errors."""
        import zeep.exceptions as zx
        service = self._client()

        def once():
            try:
                return getattr(service, operation)(**params)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(
                    f'iMUIS {operation}: network error '
                    f'({type(exc).__name__})') from None
            except zx.TransportError as exc:
                if exc.status_code >= 500 or exc.status_code == 429:
                    raise TransientError(
                        f'iMUIS {operation}: HTTP {exc.status_code}') from None
                raise HubError(f'iMUIS {operation}: HTTP {exc.status_code}'
                               ) from None
            except zx.Fault as exc:
                raise TransientError(
                    f'iMUIS {operation}: SOAP fault {exc.message}') from None
            except (zx.DTDForbidden, zx.EntitiesForbidden) as exc:
                raise SourceDataError(
                    f'iMUIS {operation}: reply refused, it declares a DTD/'
                    f'entities (possible XXE): {exc}') from None
            except (zx.XMLSyntaxError, etree.XMLSyntaxError,
                    zx.XMLParseError, TypeError, AttributeError) as exc:
                raise SourceDataError(
                    f'iMUIS {operation}: malformed reply ({exc})') from None
        reply = retrying(self.attempts, self.retry_wait)(once)
        try:
            reply[f'{operation}Result']
        except Exception:
            raise SourceDataError(f'iMUIS {operation}: malformed reply '
                                  '(no result element)') from None
        return reply

    def _login(self):
        try:
            reply = self._call('Login', PartnerKey=self.partner_key,
                               Omgevingscode=self.environment)
        except TransientError as exc:
            if 'network error' in str(exc):
                raise Unreachable(f'iMUIS is unreachable at '
                                  f'{self.endpoint or self.wsdl}: {exc}'
                                  ) from None
            raise
        if not reply['LoginResult'] or not reply['SessionId']:
            raise _classify_login(reply['Foutmelding'])
        self._session_id = reply['SessionId']
        from .. import logsafe
        logsafe.register(self._session_id)
        log.info('iMUIS login ok')
        return self._session_id

    # -- interface -----------------------------------------------------
    def validate(self):
        self._login()

    def close(self):
        if self._session_id and self._service is not None:
            try:
                self._service.Logout(PartnerKey=self.partner_key,
                                     Omgevingscode=self.environment,
                                     SessionId=self._session_id)
            except Exception:  # best effort
                pass
        self._session_id = None

    def selectie(self, table, fields, since=None, where=(), page=1,
                 orderby=None):
        root = etree.Element('NewDataSet')
        t = etree.SubElement(root, 'Table1')

        def sub(tag, text=None):
            el = etree.SubElement(t, tag)
            if text is not None:
                el.text = str(text)
        sub('TABLE', table)
        sub('SELECTFIELDS', ';'.join(fields))
        sub('WHEREFIELDS', ';'.join(w[0] for w in where) or None)
        sub('WHEREOPERATORS', ';'.join(w[1] for w in where) or None)
        sub('WHEREVALUES', ';'.join(str(w[2]) for w in where) or None)
        sub('MUTDATE_VA', since.strftime('%d-%m-%Y') if since else None)
        sub('ORDERBY', orderby or fields[0])
        sub('MAXRESULT', 0)
        sub('PAGESIZE', self.page_size)
        sub('SELECTPAGE', page)
        return etree.tostring(root, encoding='unicode')

    def get_records(self, table, fields, since=None, where=(), page=1,
                    orderby=None):
        """Rows (list of dicts) of one page of GetStamtabelRecords."""
        selectie = self.selectie(table, fields, since, where, page, orderby)
        for attempt in (1, 2):
            session = self._session_id or self._login()
            reply = self._call('GetStamtabelRecords',
                               PartnerKey=self.partner_key,
                               Omgevingscode=self.environment,
                               SessionId=session, Selectie=selectie)
            if reply['GetStamtabelRecordsResult']:
                break
            message = reply['Foutmelding']
            if _session_expired(message) and attempt == 1:
                log.info('iMUIS session expired, logging in again')
                self._session_id = None
                continue
            if message and ('partner' in message.lower()
                            or 'omgeving' in message.lower()):
                raise _classify_login(message)
            raise HubError(f'iMUIS GetStamtabelRecords {table} failed: '
                           f'{message or "no reason given"}')
        root = safe_parse(reply['Records'] or '<NewDataSet/>')
        rows = []
        for row in root:
            if not isinstance(row.tag, str):
                continue
            rows.append({child.tag: (child.text or '') for child in row
                         if isinstance(child.tag, str)})
        return rows

    def _plan(self, stream, first):
        if stream == 'debtors':
            return 'DEB', DEB_FIELDS, (), 'NR'
        if stream == 'open_items':
            # first pass: only what is open; later passes: every change,
            # so items paid since come out with open_amount 0
            where = (('SALDO', '<>', '0'),) if first else ()
            return 'DEBOPP', DEBOPP_FIELDS, where, 'FACT'
        if stream == 'payments':
            return 'DEBOPP', PAYMENT_FIELDS, (('BET', '<>', '0'),), 'FACT'
        raise ValueError(f'unknown stream {stream!r}')

    def read(self, stream, cursor):
        state = load_cursor(cursor)
        since = parse_date(state.get('since'))
        started = state.get('started') or dt.date.today().isoformat()
        page = int(state.get('page') or 1)
        table, fields, where, orderby = self._plan(stream, since is None)
        while True:
            rows = self.get_records(table, fields, since, where, page,
                                    orderby)
            if len(rows) >= self.page_size:
                next_cursor = dump_cursor(
                    since=since.isoformat() if since else None,
                    page=page + 1, started=started)
                yield Page(rows, next_cursor, {'page': page})
                page += 1
                continue
            yield Page(rows, dump_cursor(since=started), {'page': page})
            return

    # -- mapping -------------------------------------------------------
    def map(self, stream, records):
        mapper = {'debtors': self.map_debtor, 'open_items': self.map_item,
                  'payments': self.map_payment}[stream]
        out = []
        for row in records:
            try:
                record = mapper(row)
            except (ValueError, TypeError) as exc:
                log.warning('iMUIS %s row left out: %s', stream, exc)
                continue
            if record is not None:
                out.append(record)
        return out

    @staticmethod
    def map_debtor(row):
        name = ' '.join(x for x in (row.get('NAAM'), row.get('NAAM2')) if x)
        business = bool(row.get('KVKNR') or row.get('BTWNR'))
        return Debtor(
            external_id=row.get('NR', '').strip(),
            name=name or row.get('ZKSL') or row.get('NR', ''),
            kind='business' if business else 'consumer',
            email=row.get('EMAIL') or None, phone=row.get('TEL') or None,
            street=row.get('ADRES') or None,
            postal_code=row.get('POSTCD') or None,
            city=row.get('PLAATS') or None, country=row.get('LAND') or None,
            vat_number=row.get('BTWNR') or None,
            coc_number=row.get('KVKNR') or None)

    @staticmethod
    def map_item(row):
        amount = parse_decimal(row.get('BEDR')) or Decimal(0)
        saldo = parse_decimal(row.get('SALDO'))
        if saldo is None:
            saldo = amount - (parse_decimal(row.get('BET')) or 0)
        if _bool(row.get('VOLDAAN')) or saldo == 0:
            saldo = Decimal(0)
        invoice_date = parse_date(row.get('DAT'))
        due = parse_date(row.get('DATVERV')) or invoice_date
        if due is None:
            raise ValueError(f'item {row.get("FACT")!r} has no due date')
        return OpenItem(
            external_id=row.get('FACT', '').strip(),
            debtor=row.get('DEB', '').strip(), number=row.get('FACT'),
            description=row.get('OMSCHR') or row.get('KENM') or None,
            invoice_date=invoice_date, due_date=due,
            currency=row.get('VAL') or None, amount=amount,
            open_amount=saldo)

    @staticmethod
    def map_payment(row):
        paid = parse_decimal(row.get('BET'))
        if not paid:
            return None
        date = (parse_date(row.get('DATLSTBET'))
                or dt.date.today())
        fact = row.get('FACT', '').strip()
        # one cumulative payment per item: amount = total paid so far
        return Payment(external_id=f'{fact}:paid', item=fact, date=date,
                       amount=paid)
