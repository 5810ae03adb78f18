# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Channels: phone numbers, opt-outs, the letter batch, the callback route
through which providers report delivery status, and the sender. The
providers themselves are in `providers/`, one file each.

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
import io
import json
import logging
import time

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
from .providers import (
    PROVIDERS, CMProvider, call_provider, close_providers, secret_matches)
from .webhook import send_in_batches as send_webhooks

logger = logging.getLogger(__name__)
# Callback secrets and portal tokens stay out of the request and RPC logs.
logsafe.install()


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
        if not getattr(PROVIDERS.get(provider), 'reports', False):
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
    handed to its provider outside any transaction; what the providers
    answered is recorded in one short transaction, retried on a conflict
    (a status report for the same message may be landing at that moment).
    Killed at any moment, a restarted sender loses nothing and
    sends again only what the receiver can recognise as a repeat (the
    email's Message-ID, the letter's Idempotency-Key) or what no status
    report settled in time (CM): see `Communication.claim`."""
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
        jobs = Communication.prepare(communications, events, today)
        sent = len([c for c in communications if c.state == 'queued'])
        Communication.save(communications)
        Event.save(events)
        return sent, jobs

    try:
        while True:
            ids = transaction(lambda pool: pool.get(
                    'payt.communication').claim(administration, batch_size))
            if not ids:
                # Then the webhooks, claimed and recorded the same way.
                return total + send_webhooks(transaction, administration,
                    batch_size)
            sent, jobs = transaction(prepare)
            total += sent
            down = set()
            answers = [(job,) + call_provider(job, down) for job in jobs]
            total += transaction(lambda pool: pool.get(
                    'payt.communication').record_all(answers))
            if progress:
                progress(total)
    finally:
        close_providers()


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
