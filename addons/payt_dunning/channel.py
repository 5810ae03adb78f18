# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Channels other than plain SMTP: the provider adapters behind one small
interface, phone numbers, opt-outs, the letter batch and the callback route
through which providers report delivery status.

Providers
- SMS and robocall: CM.com (Breda), its Business Messaging API for SMS and
  its Voice API for text-to-speech notification calls; one product token
  covers both, it reaches Dutch mobile operators directly and reports
  delivery per message with the `reference` we give (our idempotency key).
  CM has no idempotency key of its own: see `Communication.claim`.
- Letters: a print-and-mail service (a generic REST shape; `printmail`
  simulator) that takes one PDF per letter with an `Idempotency-Key`
  header, so a resent letter is answered with the original instead of
  being printed twice.

Callbacks refuse by default: each provider's report is verified by that
provider's own scheme with a secret set at installation, and refused
(403) while the secret is unset (docs/SECURITY.md):
- cm, cm-inbound: CM signs nothing; the status report URL configured at CM
  (and the callback-url of each call) carries `cm_callback_secret` as
  `token`, compared in constant time.
- printmail: `X-Signature` is the hex HMAC-SHA256, keyed with
  `printmail_secret`, of `<X-Signature-Timestamp>.<body>`; a timestamp
  more than `callback_tolerance` seconds (300) off is refused (replay).
- bounce: our own mail server's pipe carries `bounce_secret` as `token`.
A verified report only settles communications of that provider's channels
that were handed to it (PROVIDER_CHANNELS, Communication.apply_reports).

Settings, section [payt_channels] of trytond.conf (or
TRYTOND_PAYT_CHANNELS__<NAME>); the secrets live only there:
    cm_url, cm_voice_url, cm_token, sms_sender, call_caller,
    printmail_url, printmail_key, printmail_secret,
    callback_url (our public base, e.g. https://erp.example/DB/payt/callback),
    cm_callback_secret, bounce_secret, callback_tolerance (default 300),
    reconcile_seconds (default 600)
"""
import base64
import dataclasses
import hashlib
import hmac
import io
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request

import phonenumbers

from trytond import config
from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, Unique, fields
from trytond.model.exceptions import AccessError
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction, check_access
from trytond.wizard import Button, StateTransition, StateView, Wizard

from . import logsafe
from .company import CompanyConsistentMixin
from .webhook import send_in_batches as send_webhooks

logger = logging.getLogger(__name__)
SECTION = 'payt_channels'
# Callback secrets and portal tokens stay out of the request and RPC logs.
logsafe.install()


def setting(name, default=None):
    return config.get(SECTION, name, default=default)


def secret_matches(given, name):
    """Whether `given` is the shared secret of setting `name`; never when
    the secret is unset (no anonymous acceptance)."""
    expected = setting(name)
    if not expected or not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


# ------------------------------------------------------------ phone numbers

class PhoneError(ValueError):
    pass


def normalise_phone(number, country='NL', mobile=False):
    """The number in E.164 (+31612345678), or PhoneError.

    National numbers are read in the debtor's country (NL by default);
    `mobile` refuses fixed lines (an SMS cannot reach them)."""
    if not number or not number.strip():
        raise PhoneError("no phone number")
    try:
        parsed = phonenumbers.parse(number, (country or 'NL').upper())
    except phonenumbers.NumberParseException as exception:
        raise PhoneError("%r is not a phone number (%s)" % (number, exception))
    if not phonenumbers.is_valid_number(parsed):
        raise PhoneError("%r is not a valid phone number" % number)
    if mobile and phonenumbers.number_type(parsed) not in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise PhoneError("%r is not a mobile number" % number)
    return phonenumbers.format_number(
        parsed, phonenumbers.PhoneNumberFormat.E164)


# ---------------------------------------------------------------- adapters

@dataclasses.dataclass
class Outgoing:
    "One message for a provider."
    key: str                    # our idempotency key, also the reference
    channel: str                # sms, call or letter
    to: str = ''                # E.164 for sms and call
    text: str = ''
    language: str = 'nl'
    pdf: bytes = b''            # letters
    recipient: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Receipt:
    provider_id: str
    state: str = 'queued'       # queued or sent


@dataclasses.dataclass
class StatusReport:
    "What a provider callback says about one message."
    state: str                  # queued, sent, delivered, failed, returned
    key: str = None
    provider_id: str = None
    error: str = None


class ProviderError(Exception):
    """The provider refused the message; permanent unless `retry`.
    `ambiguous`: no answer came, the provider may have the message."""

    def __init__(self, message, retry=False, ambiguous=False):
        super().__init__(message)
        self.retry = retry or ambiguous
        self.ambiguous = ambiguous


@dataclasses.dataclass
class Job:
    "One message for a provider and the communications it covers."
    ids: list
    provider: str
    what: str
    outgoing: Outgoing


def call_provider(job, down=None):
    """(Receipt, None) or (None, ProviderError); no database involved.
    `down`: a set of providers that refused in this batch; they are not
    called again (see channel_backoff) and a refusal adds to it."""
    if down is not None and job.provider in down:
        return None, ProviderError("%s is down, retried later" % (
                job.provider), retry=True)
    try:
        return PROVIDERS[job.provider]().send(job.outgoing), None
    except ProviderError as error:
        if down is not None and error.retry:
            down.add(job.provider)
        return None, error


class Provider:
    """The interface of every channel provider.

    `send` hands one message over and returns a Receipt, or raises
    ProviderError; `parse_callback` turns a callback's body into
    StatusReports. `idempotent` says whether the provider answers a repeated
    key with the original message instead of sending it again."""
    name = None
    idempotent = False

    def send(self, message):
        raise NotImplementedError

    def verify(self, body, headers, query):
        "Whether the callback comes from this provider (its own scheme)."
        raise NotImplementedError

    def parse_callback(self, body, headers, query):
        raise NotImplementedError

    @staticmethod
    def _post(url, payload, headers=None, timeout=30):
        data = json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method='POST',
            headers=dict({'Content-Type': 'application/json',
                    'Accept': 'application/json'}, **(headers or {})))
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b'{}')
        except urllib.error.HTTPError as error:
            body = error.read()
            try:
                body = json.loads(body)
            except ValueError:
                body = {'details': body.decode(errors='replace')}
            return error.code, body
        except (urllib.error.URLError, OSError) as error:
            refused = isinstance(getattr(error, 'reason', error),
                ConnectionRefusedError)
            raise ProviderError("%s unreachable: %s" % (url, error),
                retry=True, ambiguous=not refused)


def callback_url(provider, key=None, secret=None):
    "Our callback route for a provider; `secret`: the setting to carry."
    base = setting('callback_url')
    if not base:
        return None
    query = {}
    if secret:
        query['token'] = setting(secret, '')
    if key:
        query['key'] = key
    url = '%s/%s' % (base.rstrip('/'), provider)
    return '%s?%s' % (url, urllib.parse.urlencode(query)) if query else url


# CM status codes of a delivery report (statuscode / status.code).
CM_SMS_STATUS = {'0': 'sent', '1': 'failed', '2': 'delivered', '3': 'failed'}
# CM Voice API results of a finished notification call.
CM_CALL_RESULT = {'finished': 'delivered', 'answered': 'delivered',
    'no-answer': 'failed', 'busy': 'failed', 'failed': 'failed',
    'rejected': 'failed', 'hangup': 'delivered'}
CM_VOICES = {'nl': 'nl-NL', 'en': 'en-GB'}


class CMProvider(Provider):
    """CM.com: SMS through the Business Messaging API (POST /v1.0/message),
    robocalls through the Voice API (POST /voiceapi/v2/Notification)."""
    name = 'cm'
    idempotent = False

    def __init__(self, url=None, voice_url=None, token=None):
        self.url = (url or setting('cm_url',
                'https://gw.messaging.cm.com')).rstrip('/')
        self.voice_url = (voice_url or setting('cm_voice_url',
                'https://api.cm.com')).rstrip('/')
        self.token = token or setting('cm_token', '')

    def send(self, message):
        if message.channel == 'sms':
            return self._sms(message)
        if message.channel == 'call':
            return self._call(message)
        raise ProviderError("CM does not send %s" % message.channel)

    def _sms(self, message):
        payload = {'messages': {
                'authentication': {'producttoken': self.token},
                'msg': [{
                        'from': setting('sms_sender', 'Payt'),
                        'to': [{'number': message.to}],
                        'body': {'type': 'auto', 'content': message.text},
                        'reference': message.key,
                        'allowedChannels': ['SMS'],
                        'minimumNumberOfMessageParts': 1,
                        'maximumNumberOfMessageParts': 8,
                        }],
                }}
        status, body = self._post(self.url + '/v1.0/message', payload)
        results = body.get('messages') or [{}]
        result = results[0]
        if status >= 500 or status == 429:
            raise ProviderError("CM: %s %s" % (status, body.get('details')),
                retry=True)
        if status >= 400 or body.get('errorCode') or result.get(
                'messageErrorCode'):
            raise ProviderError("CM refused the SMS: %s" % (
                    result.get('messageDetails') or body.get('details')))
        return Receipt(provider_id=result.get('reference') or message.key,
            state='queued')

    def _call(self, message):
        payload = {
            'callee': message.to,
            'caller': setting('call_caller', '+31850000000'),
            'anonymous': False,
            'prompt': message.text,
            'prompt-type': 'TTS',
            'voice': {'language': CM_VOICES.get(message.language, 'nl-NL'),
                'gender': 'Female', 'number': 1},
            'max-replays': 2,
            'auto-replay': False,
            'callback-url': callback_url('cm', message.key,
                secret='cm_callback_secret'),
            }
        status, body = self._post(self.voice_url + '/voiceapi/v2/Notification',
            payload, headers={'X-CM-PRODUCTTOKEN': self.token})
        if status >= 500 or status == 429:
            raise ProviderError("CM voice: %s" % status, retry=True)
        if status >= 400:
            raise ProviderError("CM refused the call: %s" % (
                    body.get('message') or body.get('details') or status))
        return Receipt(provider_id=body.get('call-id') or message.key,
            state='queued')

    def verify(self, body, headers, query):
        "CM signs nothing: the URL configured at CM carries our secret."
        return secret_matches(query.get('token'), 'cm_callback_secret')

    def parse_callback(self, body, headers, query):
        reports = []
        data = json.loads(body or b'{}') if body else {}
        if query.get('statuscode') is not None:
            # The GET form of a delivery report.
            data = {'messages': {'msg': {
                        'reference': query.get('reference'),
                        'status': {'code': query.get('statuscode'),
                            'errorDescription': query.get(
                                'errordescription')}}}}
        if 'messages' in data:
            messages = data['messages'].get('msg')
            if isinstance(messages, dict):
                messages = [messages]
            for msg in messages or []:
                status = msg.get('status') or {}
                state = CM_SMS_STATUS.get(str(status.get('code')))
                if state:
                    reports.append(StatusReport(state=state,
                            key=msg.get('reference'),
                            error=status.get('errorDescription') or None))
        elif data.get('type'):
            # A Voice API event; only the end of the call settles it.
            kind = data['type'].lower()
            if 'finished' in kind or 'disconnected' in kind:
                result = str(data.get('result', 'finished')).lower()
                state = CM_CALL_RESULT.get(result, 'failed')
                reports.append(StatusReport(state=state,
                        key=query.get('key'),
                        provider_id=data.get('call-id'),
                        error=None if state == 'delivered' else result))
        return reports

    def parse_inbound(self, body, query):
        "An inbound SMS (MO): (sender in E.164, text), for STOP replies."
        data = dict(query)
        if body:
            try:
                data.update(json.loads(body))
            except ValueError:
                data.update(urllib.parse.parse_qsl(body.decode()))
        sender = data.get('from') or data.get('sender') or data.get(
            'originator')
        if isinstance(sender, dict):
            sender = sender.get('number')
        text = data.get('message') or data.get('text') or data.get('body')
        if isinstance(text, dict):
            text = text.get('text') or text.get('content')
        return sender, (text or '').strip()


PRINTMAIL_STATUS = {'accepted': 'queued', 'queued': 'queued',
    'printed': 'queued', 'posted': 'sent', 'delivered': 'delivered',
    'returned': 'returned', 'cancelled': 'failed', 'failed': 'failed'}


class PrintMailProvider(Provider):
    """A print-and-mail service: POST /v1/letters with the PDF and the
    address, an Idempotency-Key header; status events are signed webhooks
    (X-Signature: HMAC-SHA256 of `<X-Signature-Timestamp>.<body>`, the
    scheme of Lob's public clients, so a captured event cannot be replayed
    later)."""
    name = 'printmail'
    idempotent = True

    def __init__(self, url=None, key=None, secret=None):
        self.url = (url or setting('printmail_url',
                'http://127.0.0.1:8093')).rstrip('/')
        self.key = key or setting('printmail_key', '')
        self.secret = secret or setting('printmail_secret', '')

    def send(self, message):
        payload = {
            'reference': message.key,
            'recipient': message.recipient,
            'pdf': base64.b64encode(message.pdf).decode(),
            'color': False, 'duplex': True, 'mail_class': 'standard',
            'webhook_url': callback_url('printmail'),
            }
        status, body = self._post(self.url + '/v1/letters', payload,
            headers={'Authorization': 'Bearer %s' % self.key,
                'Idempotency-Key': message.key})
        if status >= 500 or status == 429:
            raise ProviderError("print and mail: %s" % status, retry=True)
        if status >= 400:
            raise ProviderError("print and mail refused the letter: %s" % (
                    body.get('error') or status))
        return Receipt(provider_id=body['id'],
            state=PRINTMAIL_STATUS.get(body.get('status'), 'queued'))

    @staticmethod
    def signature(secret, timestamp, body):
        return hmac.new(secret.encode(), str(timestamp).encode() + b'.'
            + (body or b''), hashlib.sha256).hexdigest()

    def verify(self, body, headers, query=None):
        "Refused without a secret, a fresh timestamp and its signature."
        timestamp = headers.get('X-Signature-Timestamp') or ''
        given = headers.get('X-Signature') or ''
        if not (self.secret and timestamp.isdigit() and given):
            return False
        tolerance = float(setting('callback_tolerance', 300))
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
        return hmac.compare_digest(given.encode(),
            self.signature(self.secret, timestamp, body).encode())

    def parse_callback(self, body, headers, query):
        data = json.loads(body or b'{}')
        events = data.get('events') or [data]
        reports = []
        for event in events:
            state = PRINTMAIL_STATUS.get(event.get('status'))
            if state:
                reports.append(StatusReport(state=state,
                        key=event.get('reference'),
                        provider_id=event.get('id'),
                        error=event.get('reason')))
        return reports


PROVIDERS = {'cm': CMProvider, 'printmail': PrintMailProvider}
# Which provider delivers which channel.
CHANNEL_PROVIDER = {'sms': 'cm', 'call': 'cm', 'letter': 'printmail'}
# The channels a provider may report on: an SMS report never touches an
# email or a letter.
PROVIDER_CHANNELS = {provider: tuple(c for c, p in CHANNEL_PROVIDER.items()
        if p == provider) for provider in PROVIDERS}


def provider_for(channel):
    return PROVIDERS[CHANNEL_PROVIDER[channel]]()


def merge_pdfs(pdfs):
    "One PDF of many, in order (the day's letters for posting in-house)."
    from pypdf import PdfWriter
    writer = PdfWriter()
    for pdf in pdfs:
        writer.append(io.BytesIO(pdf))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# ------------------------------------------------------------------ models

class OptOut(CompanyConsistentMixin, ModelSQL, ModelView):
    "Channel Opt-out"
    __name__ = 'payt.channel.optout'
    __string__ = "Channel Opt-out"
    company = fields.Many2One(
        'company.company', "Company", required=True)
    address = fields.Char("Phone or Email", required=True,
        help="Phone numbers in E.164 (+31612345678).")
    channel = fields.Selection([
            ('sms', "SMS"),
            ('call', "Robocall"),
            ('email', "Email"),
            ('all', "All"),
            ], "Channel", required=True)
    date = fields.Date("Date", required=True)
    source = fields.Selection([
            ('reply', "Debtor replied STOP"),
            ('manual', "Recorded by hand"),
            ], "Source", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('address_channel_unique',
                Unique(t, t.company, t.address, t.channel),
                'payt_dunning.msg_channel_optout_unique'),
            ]

    @staticmethod
    def default_company():
        return Transaction().context.get('company')

    @staticmethod
    def default_channel():
        return 'all'

    @staticmethod
    def default_source():
        return 'manual'

    @classmethod
    def default_date(cls):
        return Pool().get('ir.date').today()

    @classmethod
    def preprocess_values(cls, mode, values):
        values = super().preprocess_values(mode, values)
        address = values.get('address')
        if address and '@' not in address:
            try:
                values['address'] = normalise_phone(address)
            except PhoneError:
                pass
        elif address:
            values['address'] = address.strip().lower()
        return values

    @classmethod
    def opted_out(cls, company, address, channel):
        if not address:
            return False
        return bool(cls.search([
                    ('company', '=', company.id),
                    ('address', '=', address.lower() if '@' in address
                        else address),
                    ('channel', 'in', [channel, 'all']),
                    ], limit=1))

    @classmethod
    def record_reply(cls, sender, text):
        """A debtor's STOP reply by SMS: opt out of SMS and calls in every
        company that sent to that number."""
        pool = Pool()
        Communication = pool.get('payt.communication')
        if (text or '').strip().split()[:1] not in (['STOP'], ['stop'],
                ['Stop']):
            return []
        try:
            number = normalise_phone(sender)
        except PhoneError:
            return []
        companies = {c.company for c in Communication.search([
                    ('recipient', '=', number),
                    ('channel', 'in', ['sms', 'call']),
                    ])}
        created = []
        for company in companies:
            for channel in ['sms', 'call']:
                if not cls.opted_out(company, number, channel):
                    created.append(cls(company=company, address=number,
                            channel=channel, source='reply'))
        cls.save(created)
        return created


class Administration(metaclass=PoolMeta):
    __name__ = 'payt.administration'
    letters_self_posted = fields.Boolean("Post Letters Ourselves",
        help="Letters are not sent to the print and mail service: download "
        "the day's letters as one PDF and post them yourself.")


class LetterBatchStart(ModelView):
    "Download Letters"
    __name__ = 'payt.letter.batch.start'
    __string__ = "Download Letters"
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True)
    date = fields.Date("Run Date", required=True)


class LetterBatchResult(ModelView):
    "Download Letters"
    __name__ = 'payt.letter.batch.result'
    __string__ = "Download Letters"
    letters = fields.Integer("Letters", readonly=True)
    file = fields.Binary("PDF", filename='filename', readonly=True)
    filename = fields.Char("File Name", readonly=True)


class LetterBatch(Wizard):
    "Download Letters"
    __name__ = 'payt.letter.batch'
    __string__ = "Download Letters"
    start = StateView('payt.letter.batch.start',
        'payt_dunning.letter_batch_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Download", 'build', 'tryton-ok', default=True),
            ])
    build = StateTransition()
    result = StateView('payt.letter.batch.result',
        'payt_dunning.letter_batch_result_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def default_start(self, fields):
        values = {'date': Pool().get('ir.date').today()}
        if self.model and self.model.__name__ == 'payt.administration' \
                and self.record:
            values['administration'] = self.record.id
        return values

    def transition_build(self):
        Communication = Pool().get('payt.communication')
        self._check_administration()
        self._count, self._pdf = Communication.letter_batch(
            self.start.administration, self.start.date)
        return 'result'

    def _check_administration(self):
        """The wizard runs without access checks (Tryton's wizards do): the
        administration chosen in its form is checked against the user's
        record rules here, as `read` would."""
        Administration = Pool().get('payt.administration')
        administration = self.start.administration
        try:
            with check_access():
                Administration.read([administration.id], ['id'])
        except AccessError:
            raise AccessError(gettext(
                    'payt_dunning.msg_letter_batch_administration',
                    administration=administration.id))

    def default_result(self, fields):
        return {
            'letters': self._count,
            'file': self._pdf,
            'filename': 'letters-%s.pdf' % self.start.date.isoformat(),
            }


# --------------------------------------------------------- callback route

def _register_route():
    from trytond.protocols.wrappers import (
        Response, abort, with_pool, with_transaction)
    from trytond.wsgi import app

    def answer(**counts):
        # A Response of its own: trytond would JSON-encode a str again
        # for a JSON request.
        return Response(json.dumps(counts), content_type='application/json')

    @app.route('/<database_name>/payt/callback/<provider>',
        methods=['GET', 'POST'])
    @with_pool
    @with_transaction(readonly=False)
    def payt_callback(request, pool, provider):
        """Delivery status from a provider, a STOP reply or a bounce; each
        verified by its sender's own scheme, refused when unverified."""
        Communication = pool.get('payt.communication')
        body = request.get_data()
        query = dict(request.args)
        if provider == 'bounce':
            if not secret_matches(query.get('token'), 'bounce_secret'):
                abort(403)
            found = Communication.process_bounce(body)
            return answer(communications=len(found))
        if provider == 'cm-inbound':
            if not CMProvider().verify(body, request.headers, query):
                abort(403)
            sender, text = CMProvider().parse_inbound(body, query)
            created = pool.get('payt.channel.optout').record_reply(
                sender, text)
            return answer(optouts=len(created))
        if provider not in PROVIDERS:
            abort(404)
        handler = PROVIDERS[provider]()
        if not handler.verify(body, request.headers, query):
            abort(403)
        query.pop('token', None)
        try:
            reports = handler.parse_callback(body, request.headers, query)
        except ValueError:
            abort(400)
        updated = Communication.apply_reports(provider, reports)
        return answer(updated=len(updated))
    return payt_callback


payt_callback = _register_route()


# ------------------------------------------------------------- the sender

def run_sender(database, administration=None, batch_size=25, progress=None):
    """Deliver every pending communication in batches and return how many
    were handed over.

    Per batch: a claim is committed before any provider is called; the
    messages are prepared (rendered, PDFs made) and committed; each is
    handed to its provider outside any transaction; what the provider
    answered is recorded in a short transaction of its own, retried on a
    conflict (a status report for the same message may be landing at that
    moment). Killed at any moment, a restarted sender sends each
    communication once: see `Communication.claim`."""
    from trytond import backend
    from trytond.pool import Pool as _Pool
    from trytond.transaction import Transaction as _Transaction
    pool = _Pool(database)
    total = 0

    def transaction(work, attempts=6):
        for attempt in range(attempts):
            try:
                with _Transaction().start(database, 0, context={
                            '_skip_warnings': True}) as current:
                    result = work(pool)
                    current.commit()
                    return result
            except backend.DatabaseOperationalError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.05 * 2 ** attempt)

    def prepare(pool):
        Communication = pool.get('payt.communication')
        Event = pool.get('payt.event')
        today = pool.get('ir.date').today()
        # Rows another sender is preparing are its own (SKIP LOCKED).
        communications = [c for c in Communication.lock_free(
                Communication.browse(ids)) if c.state == 'pending']
        events = []
        emails = [c for c in communications if c.channel == 'email']
        # Email leaves when this transaction commits.
        sent = Communication._deliver_email(emails, events, today)
        others = [c for c in communications if c.channel != 'email']
        jobs = Communication.prepare(others, events, today)
        sent += len([c for c in others if c.state == 'queued'])
        Communication.save(communications)
        Event.save(events)
        return sent, jobs

    while True:
        ids = transaction(lambda pool: pool.get('payt.communication').claim(
                administration, batch_size))
        if not ids:
            # Then the webhooks, claimed and recorded the same way.
            return total + send_webhooks(transaction, administration,
                batch_size)
        sent, jobs = transaction(prepare)
        total += sent
        down = set()
        for job in jobs:
            receipt, error = call_provider(job, down)
            total += transaction(lambda pool: pool.get(
                    'payt.communication').record(job, receipt, error))
            if progress:
                progress(total)


def main(argv=None):
    "python -m trytond.modules.payt_dunning.channel -d DB: the sender."
    import argparse
    parser = argparse.ArgumentParser(prog='payt-sender')
    parser.add_argument('-d', '--database', required=True)
    parser.add_argument('-c', '--config')
    parser.add_argument('--batch-size', type=int, default=25)
    args = parser.parse_args(argv)
    if args.config:
        config.update_etc(args.config)
    from trytond.pool import Pool as _Pool
    _Pool.start()
    pool = _Pool(args.database)
    pool.init()
    sent = run_sender(args.database, batch_size=args.batch_size,
        progress=lambda n: print("delivered %d" % n, flush=True))
    print("done %d" % sent, flush=True)
    return 0


if __name__ == '__main__':
    import sys
    sys.exit(main())
