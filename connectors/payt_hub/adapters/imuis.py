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

Streams: ``debtors`` = table DEB, ``open_items`` = table DEBOPP rows with
``SALDO <> 0``, both listed whole at every sync with keyset paging:
``ORDERBY`` the key (NR, FACT) and ``WHEREFIELDS`` key ``>`` the last key
seen, always ``SELECTPAGE 1``. Page numbers over a changing table skip rows
(a row paid or deleted before the current page shifts every later row one
place back); "greater than the last key" cannot. Keys compare as text, the
order of the listing.

Cursor (JSON): {"after": "<last key of the last page imported>"} while a
pass is under way; None once it is complete.

Amounts: ``BEDR``/``SALDO``/``BET`` are in euros; an item in another
currency (``VAL``) has its own amounts in ``BEDRVAL``/``SALDOVAL``/
``BETVAL``, which are the ones used (falling back to the euro fields when
they are empty). A credit note linked to an invoice (``CREDITNOTAFACT``) is
netted into that invoice and yields no item of its own; an unlinked one is
an item with a negative amount described as a credit note.
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
                 'SALDO', 'VAL', 'BEDRVAL', 'SALDOVAL', 'BETVAL', 'KENM',
                 'OMSCHR', 'AANM', 'DATLSTAANM', 'DATLSTBET', 'BETWIST',
                 'VOLDAAN', 'UITHANDEN', 'CREDITNOTADEB', 'CREDITNOTAFACT')
#: (table, fields, fixed WHERE, key) per stream
PLANS = {'debtors': ('DEB', DEB_FIELDS, (), 'NR'),
         'open_items': ('DEBOPP', DEBOPP_FIELDS, (('SALDO', '<>', '0'),),
                        'FACT')}

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
        #: {invoice FACT: {credit note FACT: SALDOVAL}} of the current pass
        self._credits: dict[str, dict[str, Decimal]] = {}

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
        # <NewDataSet><METADATA><TOTALPAGES>..</METADATA><DATA>row</DATA>..
        return [{child.tag: (child.text or '') for child in row
                 if isinstance(child.tag, str)}
                for row in root.iterchildren('DATA')]

    def listing(self, table, fields, where, key, after=None):
        """Pages (rows, last) of a whole table in key order, keyset paged
        after ``after``."""
        while True:
            page_where = tuple(where) + (((key, '>', after),) if after else ())
            rows = self.get_records(table, fields, None, page_where, 1, key)
            last = len(rows) < self.page_size
            yield rows, last
            if last or not rows:
                return
            after = rows[-1].get(key, '').strip()

    def read(self, stream, cursor):
        table, fields, where, key = PLANS[stream]
        after = load_cursor(cursor).get('after')
        if stream == 'open_items':
            self._load_credits()
        listed = set()
        for rows, last in self.listing(table, fields, where, key, after):
            upto = rows[-1].get(key, '').strip() if rows else after
            extra = []
            if stream == 'open_items':
                listed.update(r.get('FACT', '').strip() for r in rows)
                extra = self._invoices_of_new_credits(rows)
                if last:  # paid invoices whose credit notes are still open
                    extra += self.fetch_items(sorted(
                        set(self._credits) - listed
                        - {r.get('FACT', '').strip() for r in extra}))
            yield Page(rows + extra,
                       None if last else dump_cursor(after=upto),
                       {'after': after}, after=after, upto=upto, last=last)
            after = upto

    def _load_credits(self):
        """The open credit notes linked to an invoice, to net them."""
        self._credits = {}
        where = (('SALDO', '<>', '0'), ('CREDITNOTAFACT', '<>', ''))
        for rows, _ in self.listing('DEBOPP', DEBOPP_FIELDS, where, 'FACT'):
            for row in rows:
                self._note_credit(row)

    def _note_credit(self, row):
        target = (row.get('CREDITNOTAFACT') or '').strip()
        if not target:
            return None
        amount = self._open_amount(row)
        credits = self._credits.setdefault(target, {})
        new = credits.get(row['FACT'].strip()) != amount
        credits[row['FACT'].strip()] = amount
        return target if new else None

    def _invoices_of_new_credits(self, rows):
        """Invoices of credit notes met in this page and not known at the
        start of the pass: read again, netted."""
        targets = {t for t in map(self._note_credit, rows) if t}
        targets -= {r.get('FACT', '').strip() for r in rows}
        return self.fetch_items(sorted(targets)) if targets else []

    def _fetch(self, table, fields, key, ids):
        rows = []
        for external_id in ids:
            rows += self.get_records(table, fields, None,
                                     ((key, '=', external_id),), 1, key)
        return rows

    def fetch_items(self, ids):
        return self._fetch('DEBOPP', DEBOPP_FIELDS, 'FACT', ids)

    def fetch_debtors(self, ids):
        return self._fetch('DEB', DEB_FIELDS, 'NR', ids)

    # -- mapping -------------------------------------------------------
    def map(self, stream, records):
        mapper = {'debtors': self.map_debtor,
                  'open_items': self.map_item}[stream]
        out = []
        for row in records:
            try:
                mapped = mapper(row)
            except (ValueError, TypeError) as exc:
                log.warning('iMUIS %s row left out: %s', stream, exc)
                continue
            if isinstance(mapped, (list, tuple)):
                out.extend(mapped)
            elif mapped is not None:
                out.append(mapped)
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
    def _foreign(row):
        currency = (row.get('VAL') or 'EUR').strip().upper() or 'EUR'
        return currency != 'EUR' and bool(row.get('BEDRVAL'))

    def _open_amount(self, row):
        """Open amount in the item's currency."""
        if self._foreign(row) and row.get('SALDOVAL'):
            saldo = parse_decimal(row['SALDOVAL'])
        else:
            saldo = parse_decimal(row.get('SALDO'))
        if saldo is None:
            amount, paid = self._amount(row), self._paid(row)
            saldo = amount - paid
        if _bool(row.get('VOLDAAN')):
            saldo = Decimal(0)
        return saldo

    def _amount(self, row):
        field = 'BEDRVAL' if self._foreign(row) else 'BEDR'
        return parse_decimal(row.get(field)) or Decimal(0)

    def _paid(self, row):
        if self._foreign(row):
            if row.get('BETVAL'):
                return parse_decimal(row['BETVAL'])
            saldo = parse_decimal(row.get('SALDOVAL'))
            return self._amount(row) - saldo if saldo is not None \
                else Decimal(0)
        return parse_decimal(row.get('BET')) or Decimal(0)

    def map_item(self, row):
        """The item (netted with its linked credit notes) and, when
        something was paid on it, its cumulative payment."""
        fact = row.get('FACT', '').strip()
        if (row.get('CREDITNOTAFACT') or '').strip():
            return None  # netted into its invoice
        amount = self._amount(row)
        credits = sum(self._credits.get(fact, {}).values(), Decimal(0))
        open_amount = self._open_amount(row) + credits
        invoice_date = parse_date(row.get('DAT'))
        due = parse_date(row.get('DATVERV')) or invoice_date
        if due is None:
            raise ValueError(f'item {fact!r} has no due date')
        description = row.get('OMSCHR') or row.get('KENM') or None
        if amount < 0 and 'credit' not in (description or '').lower():
            description = f'Creditnota / credit note {fact}' + (
                f': {description}' if description else '')
        currency = (row.get('VAL') or 'EUR').strip().upper() or 'EUR'
        item = OpenItem(
            external_id=fact, debtor=row.get('DEB', '').strip(),
            number=fact, description=description,
            invoice_date=invoice_date, due_date=due, currency=currency,
            amount=amount, open_amount=open_amount)
        paid = self._paid(row)
        if not paid or amount < 0:
            return item
        date = parse_date(row.get('DATLSTBET')) or dt.date.today()
        # one cumulative payment per item: amount = total paid so far
        return [item, Payment(external_id=f'{fact}:paid', item=fact,
                              date=date, amount=paid)]
