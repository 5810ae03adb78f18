# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Communications: one per (item, step, channel), created by the daily run
and delivered by the sender."""
import datetime
import email
import email.policy
import logging
import re
import secrets
from collections import OrderedDict
from decimal import Decimal
from email.message import EmailMessage
from email.utils import formataddr

from sql import Null
from sql.conditionals import Case, Coalesce
from sql.functions import CurrentTimestamp

from trytond import config
from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction, without_check_access

from . import bulk, law
from .bulk import invalidate_caches
from .company import CompanyConsistentMixin
from .flow import CHANNELS
from .providers import (
    CHANNEL_PROVIDER, PROVIDER_CHANNELS, PROVIDERS, Job, Outgoing,
    call_provider, close_providers, setting)
from .timeline import event_params

STATES = [
    ('pending', "To Send"),
    ('queued', "Queued"),
    ('sent', "Sent"),
    ('delivered', "Delivered"),
    ('failed', "Failed"),
    ('returned', "Returned"),
    ]
# What a communication is: the run's flow reminders, and the notifications
# written elsewhere (a plan, a message) that leave through the same outbox.
KINDS = [
    ('reminder', "Flow Reminder"),
    ('plan_schedule', "Payment Plan Schedule"),
    ('plan_reminder', "Payment Plan Term Reminder"),
    ('message', "Message Notification"),
    ]
# Stands for the debtor's personal portal link in a notification's stored
# body: the working link is made when the email is sent.
PORTAL_LINK = '[portal-link]'
# A status report only moves a communication forward.
RANK = {'pending': 0, 'queued': 1, 'sent': 2, 'delivered': 3,
    'failed': 3, 'returned': 4}


def bundle_texts(language):
    """The words of a bundled message (messages msg_bundle_*): Dutch from
    locale/nl.po, English for a language without translation."""
    return {key: gettext('payt_dunning.msg_bundle_' + key, language)
        for key in ('intro', 'number', 'due', 'open', 'total', 'subject')}


logger = logging.getLogger(__name__)


def bundle_table(items, language):
    """The items of a bundled message as a plain-text table: number, due
    date and open amount of each, then the total."""
    texts = bundle_texts(language)
    currency = items[0].currency
    items = sorted(items, key=lambda i: (i.due_date, i.id))
    total = sum((i.open_amount for i in items), Decimal(0))
    rows = [(texts['number'], texts['due'], texts['open'])]
    rows += [(i.number or i.external_id, format_date(i.due_date, language),
            format_money(i.open_amount, currency, language)) for i in items]
    rows.append((texts['total'], '', format_money(total, currency, language)))
    widths = [max(len(r[c]) for r in rows) for c in range(2)]
    width = max(len(r[2]) for r in rows)
    lines = ['%s  %s  %s' % (r[0].ljust(widths[0]), r[1].ljust(widths[1]),
            r[2].rjust(width)) for r in rows]
    lines.insert(len(lines) - 1, '-' * len(lines[0]))
    return '\n'.join([texts['intro'], ''] + lines)
# A portal link's token in a rendered text (portal.TOKEN_RE in a URL).
PORTAL_TOKEN = re.compile(r'(/payt/portal/)[A-Za-z0-9_-]{43}')


def without_portal_tokens(text):
    """The text as stored: the personal portal link sent to the debtor
    works, the copy kept on the communication does not (whoever may read
    communications must not obtain a working token)."""
    return PORTAL_TOKEN.sub(r'\1[personal-link]', text or '')


def format_date(date, language):
    """Dates in the language's format of the back office (ir.lang), so the
    debtor and the user read one format per language: 17-10-2026 in Dutch."""
    if not date:
        return ''
    return Pool().get('ir.lang').get(language).strftime(date)


def date_format(language):
    "The strftime format of dates in `language` (ir.lang)."
    return Pool().get('ir.lang').get(language).date


def format_money(amount, currency, language):
    "EUR 1.234,56 in Dutch, EUR 1,234.56 in English."
    text = '{:,.{}f}'.format(amount, currency.digits)
    if language == 'nl':
        text = text.translate(str.maketrans(',.', '.,'))
    return '%s %s' % (currency.code, text)


class RenderCache:
    """What the messages of one sender batch share, read once: templates
    and step names per language, administrations, company names; and the
    portal links of its emails, made in one create before rendering (a
    record created in between would make the ORM reread every record it
    holds)."""

    def __init__(self):
        self.links = {}
        self._memo = {}

    def memo(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def issue_links(self, communications):
        "One new portal link for each of these (the first of an email)."
        PortalLink = Pool().get('payt.portal.link')
        urls = PortalLink.urls_for([c.item.debtor for c in communications])
        self.links.update(zip((c.id for c in communications), urls))

    def portal_url(self, communication, debtor):
        "Its link made beforehand, used once; else a new one now."
        url = self.links.pop(communication.id, None)
        return url or Pool().get('payt.portal.link').url_for(debtor)

    def template(self, step, language, kind):
        return self.memo(('template', step.id, language, kind),
            lambda: step.template_for(language, kind))

    def step_name(self, step, language):
        "The step's name in `language`."
        def name():
            with Transaction().set_context(language=language):
                return Pool().get('payt.flow.step')(step.id).name
        return self.memo(('step name', step.id, language), name)

    def company_name(self, company):
        return self.memo(('company', company.id), lambda: company.rec_name)

    def administration(self, administration):
        "One record per administration: its computed fields computed once."
        return self.memo(('administration', administration.id),
            lambda: administration)


class Communication(CompanyConsistentMixin, ModelSQL, ModelView):
    "Communication"
    __name__ = 'payt.communication'
    __string__ = "Communication"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    item = fields.Many2One('payt.item', "Open Item", required=True,
        readonly=True, ondelete='CASCADE')
    debtor = fields.Function(
        fields.Many2One('payt.debtor', "Debtor"), 'get_debtor')
    kind = fields.Selection(KINDS, "Kind", required=True, readonly=True)
    step = fields.Many2One('payt.flow.step', "Step", readonly=True,
        ondelete='RESTRICT', states={
            'required': Eval('kind', 'reminder') == 'reminder',
            })
    channel = fields.Selection(CHANNELS, "Channel", required=True,
        readonly=True)
    run_date = fields.Date("Run Date", required=True, readonly=True)
    state = fields.Selection(STATES, "State", required=True, readonly=True)
    sent_at = fields.Timestamp("Sent At", readonly=True)
    recipient = fields.Char("Recipient", readonly=True)
    subject = fields.Char("Subject", readonly=True)
    body = fields.Text("Body", readonly=True)
    message_id = fields.Char("Message-ID", readonly=True)
    error = fields.Char("Error", readonly=True)
    provider = fields.Char("Provider", readonly=True)
    provider_id = fields.Char("Provider Reference", readonly=True)
    idempotency_key = fields.Char("Idempotency Key", readonly=True,
        help="Sent to the provider with the message: a repeated send is "
        "recognised instead of delivered twice.")
    attempt_at = fields.Timestamp("Attempted At", readonly=True)
    attempts = fields.Integer("Attempts", readonly=True)
    status_at = fields.Timestamp("Status At", readonly=True)
    delivered_at = fields.Timestamp("Delivered At", readonly=True)
    letter_key = fields.Char("Letter", readonly=True,
        help="The letter this item is part of: one per debtor, step and "
        "day.")
    letter_pdf = fields.Binary("Letter PDF", readonly=True,
        filename='letter_filename')
    letter_filename = fields.Function(
        fields.Char("Letter File Name"), 'get_letter_filename')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # The database itself guarantees exactly one communication per
        # (item, step, channel), also across overlapping or killed runs.
        cls._sql_constraints += [
            ('item_step_channel_unique',
                Unique(t, t.item, t.step, t.channel),
                'payt_dunning.msg_communication_unique'),
            ]
        cls._sql_indexes.add(Index(t,
                (t.state, Index.Equality(cardinality='low')),
                (t.channel, Index.Equality(cardinality='low')),
                where=t.state == 'pending'))
        cls._sql_indexes.update({
                Index(t, (t.idempotency_key, Index.Equality())),
                Index(t, (t.provider_id, Index.Equality())),
                Index(t, (t.letter_key, Index.Equality())),
                Index(t, (t.message_id, Index.Equality())),
                })
        cls._order = [('run_date', 'DESC'), ('id', 'DESC')]

    @classmethod
    def __register__(cls, module_name):
        super().__register__(module_name)
        cls._redact_stored_tokens()

    @classmethod
    def _redact_stored_tokens(cls):
        "Bodies stored before links were rendered at send time held tokens."
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.select(table.id, table.body,
                where=table.body.like('%/payt/portal/%')))
        for id_, body in cursor.fetchall():
            redacted = without_portal_tokens(body)
            if redacted != body:
                cursor.execute(*table.update([table.body], [redacted],
                        where=table.id == id_))

    @staticmethod
    def default_state():
        return 'pending'

    @staticmethod
    def default_attempts():
        return 0

    @staticmethod
    def default_kind():
        return 'reminder'

    @classmethod
    def default_idempotency_key(cls):
        "On record from the start: every send of it carries the same."
        return cls.new_reference()

    @classmethod
    def notify(cls, kind, debtor, item, subject, body):
        """A notification to the debtor by email, as a row of the outbox:
        it leaves through the sender like every reminder, with opt-outs,
        bounces and delivery status. `body` says PORTAL_LINK where the
        debtor's personal link goes. None when the debtor has no item to
        hang it on (its timeline)."""
        pool = Pool()
        today = pool.get('ir.date').today()
        if item is None:
            items = pool.get('payt.item').search(
                [('debtor', '=', debtor.id)], order=[('id', 'ASC')], limit=1)
            if not items:
                logger.warning("No item of debtor %s to notify on", debtor.id)
                return None
            item, = items
        with without_check_access():
            communication, = cls.create([{
                        'company': debtor.company.id,
                        'item': item.id,
                        'kind': kind,
                        'channel': 'email',
                        'run_date': today,
                        'state': 'pending',
                        'subject': subject,
                        'body': body,
                        }])
        return communication

    @classmethod
    def notify_now(cls, communications):
        """Deliver notifications a user is waiting for at once, through the
        sender's own path (`deliver`): handed to the mail server now. Nothing
        leaves from a dry run."""
        communications = [c for c in communications if c]
        if not communications or Transaction().context.get('payt_dry_run'):
            return communications
        ids = [c.id for c in communications]
        with without_check_access():
            cls.deliver(cls.browse(ids))
        return cls.browse(ids)

    def get_debtor(self, name):
        return self.item.debtor.id

    def get_letter_filename(self, name):
        if self.channel == 'letter':
            return '%s.pdf' % (self.letter_key or 'letter-%s' % self.id)

    def template_values(self, items=None, cache=None):
        """The template's values for this item, or for a bundle of the
        debtor's `items` of one step: their numbers, the summed amounts, the
        earliest due date, and the costs over the summed principal."""
        cache = cache or RenderCache()
        items = items or [self.item]
        item = items[0]
        language = item.debtor.language
        today = Pool().get('ir.date').today()
        portal_url = cache.portal_url(self, item.debtor)
        total = sum((i.open_amount for i in items), Decimal(0))
        due_date = min(i.due_date for i in items)
        payment = cache.administration(item.administration).payment_data(
            item.debtor, [i.number or i.external_id for i in items], total,
            portal_url)
        one = len(items) == 1
        return {
            'debtor_name': item.debtor.name,
            'company': cache.company_name(item.company),
            'invoice_number': ', '.join(
                i.number or i.external_id for i in items),
            'invoice_date': format_date(item.invoice_date, language)
            if one else '',
            'due_date': format_date(due_date, language),
            'amount': format_money(sum((i.amount for i in items),
                    Decimal(0)), item.currency, language),
            'open_amount': format_money(total, item.currency, language),
            'currency': item.currency.code,
            'days_overdue': (today - due_date).days,
            'description': (item.description or '') if one else '',
            'collection_costs': self._collection_costs(total),
            'portal_url': portal_url,
            'iban': payment.iban_display,
            'payment_reference': payment.reference,
            'payment_link': payment.link,
            'payment_instruction': payment.sentence(language,
                lambda a: format_money(a, item.currency, language)),
            }

    def _collection_costs(self, principal=None):
        """Statutory costs the final notice must state exactly (WIK): over
        the summed principal of the items it names, once."""
        item = self.item
        if principal is None:
            principal = item.open_amount
        if principal <= 0:
            return ''
        costs = law.collection_costs(principal, item.debtor.kind)
        return format_money(costs.total, item.currency, item.debtor.language)

    def render(self, items=None, cache=None):
        """Fill subject and body from the step's template in the debtor's
        language; for a bundle (`items`, more than one) the template speaks
        of them all and a table lists each. `cache`: the batch's
        RenderCache."""
        cache = cache or RenderCache()
        debtor = self.item.debtor
        if self.kind not in (None, 'reminder'):
            # Written when it was decided; only the link is made now.
            link = cache.portal_url(self, debtor)
            return self.subject, (self.body or '').replace(PORTAL_LINK, link)
        template = cache.template(self.step, debtor.language, debtor.kind)
        if not template:
            return None, None
        values = self.template_values(items, cache)
        subject, body = template.render(values)
        if items and len(items) > 1:
            subject = self._bundle_subject(len(items), values, cache)
            body = '%s\n\n%s' % (body.rstrip(), bundle_table(items,
                    debtor.language))
        # Every reminder says how to pay, also when its text does not.
        if values['iban'] not in body or values['payment_link'] not in body:
            body = '%s\n\n%s' % (body.rstrip(), values['payment_instruction'])
        return subject, body

    def _links_portal(self, cache):
        "Whether its email would carry a portal link (render makes one)."
        debtor = self.item.debtor
        return bool(debtor.email) and (self.kind not in (None, 'reminder')
            or cache.template(self.step, debtor.language, debtor.kind)
            is not None)

    def _bundle_subject(self, count, values, cache):
        """A bundle's subject counts its invoices (the step's template
        speaks of one): the step's name in the debtor's language."""
        language = self.item.debtor.language
        texts = bundle_texts(language)
        step = cache.step_name(self.step, language)
        return texts['subject'].format(step=step, count=count,
            total=values['open_amount'])

    # ------------------------------------------------------------ sending

    @staticmethod
    def new_reference():
        """A random reference (144 bits, 24 characters, within CM's 32):
        nothing in it names the database, the company, the record or the
        time, so nobody can guess another's to forge its status report."""
        return secrets.token_urlsafe(18)

    def get_idempotency_key(self):
        """Stored once, before the first send (`claim`, `deliver`): every
        resend uses the same key, whoever sends it, and when."""
        return self.idempotency_key or self.new_reference()

    @classmethod
    def _pending_domain(cls, administration=None):
        "Pending, and not claimed by a sender that may still be sending."
        grace = datetime.timedelta(seconds=float(
                setting('reconcile_seconds', 600)))
        idempotent = [c for c, p in CHANNEL_PROVIDER.items()
            if PROVIDERS[p].idempotent]
        domain = [('state', '=', 'pending'),
            ['OR',
                ('attempt_at', '=', None),
                ('attempt_at', '<', datetime.datetime.now() - grace),
                ('channel', 'in', idempotent),
                ]]
        if administration:
            domain.append(('item.administration', '=',
                    getattr(administration, 'id', administration)))
        return domain

    def bundle_key(self):
        """The message this communication goes in: one per debtor, step and
        day for letters, and for the emails of a flow that bundles (the
        default); else its own."""
        if self.kind in (None, 'reminder') and (self.channel == 'letter'
                or (self.channel == 'email'
                    and not self.step.flow.per_invoice)):
            return (self.channel, self.item.debtor.id, self.step.id,
                self.run_date)
        return ('own', self.id)

    @classmethod
    def _with_whole_letters(cls, communications):
        """A letter, and a bundled email, covers all its debtor's items of
        the step and day: the pending rows of those bundles join, read in
        one search."""
        keys = {c.bundle_key() for c in communications}
        keys = {k for k in keys if k[0] != 'own'}
        if not keys:
            return communications
        ids = {c.id for c in communications}
        extra = [c for c in cls.search([
                    ('state', '=', 'pending'),
                    ('channel', 'in', list({k[0] for k in keys})),
                    ('item.debtor', 'in', list({k[1] for k in keys})),
                    ('step', 'in', list({k[2] for k in keys})),
                    ('run_date', 'in', list({k[3] for k in keys})),
                    ], order=[('id', 'ASC')])
            if c.id not in ids and c.bundle_key() in keys]
        return list(communications) + extra

    @classmethod
    def bundles(cls, communications):
        "The communications grouped by their message, in order of id."
        groups = OrderedDict()
        for communication in sorted(communications, key=lambda c: c.id):
            groups.setdefault(communication.bundle_key(), []).append(
                communication)
        return list(groups.values())

    @classmethod
    def claim(cls, administration=None, limit=None):
        """Take the next batch for a sender and return its ids; the caller
        commits before delivering.

        The claim (attempt_at, attempts, idempotency_key) is on record
        before any provider is called. A provider with idempotency keys
        (print and mail) is simply asked again: it answers with the
        original. CM has none: a claimed, still pending SMS or call is not
        sent again until `reconcile_seconds` have passed, time for CM's
        status report (carrying our key as its reference) to settle it;
        only one that no report settled is sent again."""
        communications = cls.lock_free(cls.search(
                cls._pending_domain(administration),
                limit=limit, order=[('id', 'ASC')]))
        communications = cls._with_whole_letters(communications)
        letters = [c for c in communications if c.channel == 'letter']
        cls._write_claims(communications, datetime.datetime.now())
        # The letter's key is on record before the letter goes: its status
        # webhooks find it whatever happens to the sender.
        cls._letter_groups(letters)
        cls.save(letters)
        return [c.id for c in communications]

    @classmethod
    def _write_claims(cls, communications, now):
        """The claim of each (attempt, key), those claimed alike in one
        write: a batch's first claim is one statement, not one a row."""
        alike = OrderedDict()
        for communication in communications:
            values = {'attempt_at': now,
                'attempts': (communication.attempts or 0) + 1}
            if not communication.idempotency_key:
                values['idempotency_key'] = (
                    communication.get_idempotency_key())
            alike.setdefault(tuple(sorted(values.items())), []).append(
                communication)
        arguments = []
        for values, records in alike.items():
            arguments += [records, dict(values)]
        if arguments:
            cls.write(*arguments)

    @classmethod
    def lock_free(cls, communications):
        "Those no other sender holds, held for this transaction."
        return bulk.lock_free(communications)

    @classmethod
    def send_pending(cls, administration=None, limit=None):
        """Deliver pending communications on every channel, in the caller's
        transaction, and return how many were handed over.

        Each goes to its provider now, with its idempotency key, and is
        recorded as sent after the provider accepted it (`deliver`).
        `channel.run_sender` is the same in batches, with the claim
        committed first and the providers called outside any
        transaction."""
        communications = cls.search(cls._pending_domain(administration),
            limit=limit, order=[('id', 'ASC')])
        return cls.deliver(cls._with_whole_letters(communications)) + (
            Pool().get('payt.webhook.delivery').send_pending(
                administration, limit))

    @classmethod
    def deliver(cls, communications, chunk=50):
        """Hand each communication to its provider, in the caller's
        transaction; return how many went.

        Each is handed over before it is recorded as sent: should the
        transaction not commit, it is sent again, under the same key.
        Prepared in chunks of fresh records: rendering may create records
        (portal links), and the ORM then rereads every record it holds, so
        holding them all would cost quadratic time."""
        pool = Pool()
        Event = pool.get('payt.event')
        today = pool.get('ir.date').today()
        communications = [c for c in communications if c.state == 'pending']
        for communication in communications:
            if not communication.idempotency_key:
                communication.idempotency_key = (
                    communication.get_idempotency_key())
        cls.save(communications)
        count = 0
        try:
            for ids in cls._chunks_of_bundles(
                    [c.id for c in communications], chunk):
                records, events = cls.browse(ids), []
                jobs = cls.prepare(records, events, today)
                count += len([c for c in records if c.state == 'queued'])
                cls.save(records)
                Event.save(events)
                count += cls._deliver_jobs(jobs)
        finally:
            close_providers()
        return count

    @classmethod
    def _chunks_of_bundles(cls, ids, chunk):
        "Lists of about `chunk` ids, never splitting a bundle."
        current = []
        for group in cls.bundles(cls.browse(ids)):
            if current and len(current) + len(group) > chunk:
                yield current
                current = []
            current += [c.id for c in group]
        if current:
            yield current

    def _fail(self, error, events, today, kind='failed'):
        self.state = 'failed'
        self.error = error[:1000]
        self.status_at = datetime.datetime.now()
        events.append(self._event(kind, error, today))

    def _opted_out(self, address, optouts=None):
        "optouts: the set of (company, address, channel) read beforehand."
        if optouts is not None:
            address = (address or '').lower() if '@' in (address or '') else (
                address)
            return bool({(self.company.id, address, self.channel),
                    (self.company.id, address, 'all')} & optouts)
        OptOut = Pool().get('payt.channel.optout')
        return OptOut.opted_out(self.company, address, self.channel)

    @classmethod
    def _optouts(cls, communications):
        "Every opt-out of these companies, read once for a batch."
        OptOut = Pool().get('payt.channel.optout')
        companies = list({c.company.id for c in communications})
        return {(o.company.id, o.address, o.channel) for o in OptOut.search([
                    ('company', 'in', companies)])}

    @classmethod
    def _with_attachments(cls, communications):
        "The items of these communications that have attachments."
        Attachment = Pool().get('ir.attachment')
        resources = list({str(c.item) for c in communications})
        found = set()
        for start in range(0, len(resources), 500):
            found.update(a.resource and str(a.resource)
                for a in Attachment.search([
                        ('resource', 'in', resources[start:start + 500])]))
        return found

    @classmethod
    def _prepare_email(cls, communications, events, today):
        """One email per bundle (Communication.bundles): every item due for
        the step, with the total; all its rows share its Message-ID (the
        bundle's reference: a bounce finds them all) and its delivery
        status. Returns the jobs for the SMTP provider."""
        from_addr = config.get('email', 'from')
        domain = from_addr.split('@')[-1]
        if not communications:
            return []
        optouts = cls._optouts(communications)
        attached = cls._with_attachments(communications)
        groups = cls.bundles(communications)
        cache = RenderCache()
        cache.issue_links([g[0] for g in groups if g[0]._links_portal(cache)])
        jobs = (cls._email_job(group, from_addr, domain, optouts, attached,
                events, today, cache) for group in groups)
        return [job for job in jobs if job]

    @classmethod
    def _email_job(cls, group, from_addr, domain, optouts, attached,
            events, today, cache=None):
        first = group[0]
        debtor = first.item.debtor
        subject = body = None
        if debtor.email:
            subject, body = first.render([c.item for c in group]
                if len(group) > 1 else None, cache)
        error = None
        if not debtor.email:
            error = "The debtor has no email address"
        elif subject is None:
            error = "Step %s has no template" % first.step.rec_name
        elif first._opted_out(debtor.email, optouts):
            error = "The debtor opted out of email"
        if error:
            for communication in group:
                communication._fail(error, events, today)
            return None
        try:
            msg = first._email_message(
                subject, body, from_addr, domain, attached, group, cache)
        except ValueError as exception:
            # A stored value that breaks a header fails this one alone.
            for communication in group:
                communication._fail_bad_record(
                    "Cannot build the email: %s" % exception, events, today)
            return None
        for communication in group:
            communication.recipient = debtor.email
            communication.subject = subject
            communication.body = without_portal_tokens(body)
            communication.message_id = msg['Message-ID']
        return Job(ids=[c.id for c in group], provider='smtp',
            what="Email to %s: %s" % (debtor.email, subject),
            outgoing=Outgoing(key=first.idempotency_key, channel='email',
                to=debtor.email, language=debtor.language, message=msg))

    def _email_message(self, subject, body, from_addr, domain, attached,
            group=None, cache=None):
        """Raises ValueError when a value cannot be put in a header. The
        Message-ID is the first row's key: resent after a crash, the bundle
        has the same."""
        cache = cache or RenderCache()
        msg = EmailMessage()
        msg['From'] = formataddr((cache.company_name(self.company),
                from_addr))
        msg['To'] = self.item.debtor.email
        msg['Subject'] = subject
        # Derived from the idempotency key: a bounce names it.
        msg['Message-ID'] = '<%s@%s>' % (self.idempotency_key, domain)
        msg.set_content(body)
        for communication in group or [self]:
            pdf = communication.kind in (None, 'reminder') and (
                communication.invoice_pdf(str(communication.item) in attached))
            if pdf:
                item = communication.item
                msg.add_attachment(pdf, maintype='application',
                    subtype='pdf',
                    filename='%s.pdf' % (item.number or item.external_id))
        return msg

    def _fail_bad_record(self, error, events, today):
        "Failed with its reason, and a point of attention to fix the data."
        Attention = Pool().get('payt.attention')
        self._fail(error, events, today)
        item = self.item
        Attention.raise_for(item.administration, 'email_undeliverable',
            'msg_attention_not_sent', note=error, debtor=item.debtor,
            item=item)

    def invoice_pdf(self, attachments=True):
        """The invoice as PDF where one exists: a PDF attached to the item,
        else the ERP's own printed invoice (account_invoice)."""
        pool = Pool()
        Attachment = pool.get('ir.attachment')
        item = self.item
        found = Attachment.search([
                ('resource', '=', str(item)),
                ], order=[('id', 'ASC')]) if attachments else []
        for attachment in found:
            data = attachment.data
            if data and (attachment.name or '').lower().endswith('.pdf'):
                return bytes(data)
        if (item.external_id or '').startswith('invoice-'):
            try:
                Invoice = pool.get('account.invoice')
            except KeyError:
                return None
            try:
                invoice = Invoice(int(item.external_id.split('-', 1)[1]))
                cache = invoice.invoice_report_cache
            except (ValueError, AttributeError):
                return None
            if cache and invoice.invoice_report_format == 'pdf':
                return bytes(cache)
        return None

    def _phone_text(self):
        values = self.template_values()
        language = self.item.debtor.language
        return gettext('payt_dunning.msg_phone_' + self.channel,
            language).format(**values)

    # Providers are called outside any transaction by the sender: a job is
    # plain data, prepared in one transaction and recorded in another.

    @classmethod
    def prepare(cls, communications, events, today):
        "The provider jobs of every channel; failures recorded."
        emails = [c for c in communications if c.channel == 'email']
        jobs = cls._prepare_email(emails, events, today)
        phone = [c for c in communications if c.channel in ('sms', 'call')]
        letters = [c for c in communications if c.channel == 'letter']
        if phone:
            jobs += cls._prepare_phone(phone, events, today)
        if letters:
            jobs += cls._prepare_letters(letters, events, today)
        return jobs

    @classmethod
    def _prepare_phone(cls, communications, events, today):
        from .channel import PhoneError, normalise_phone
        jobs = []
        optouts = cls._optouts(communications)
        for communication in communications:
            debtor = communication.item.debtor
            try:
                number = normalise_phone(debtor.phone, debtor.country,
                    mobile=communication.channel == 'sms')
            except PhoneError as exception:
                communication._fail("Cannot reach the debtor by %s: %s" % (
                        communication.channel, exception), events, today)
                continue
            communication.recipient = number
            if communication._opted_out(number, optouts):
                communication._fail("The debtor opted out of %s" %
                    communication.channel, events, today)
                continue
            text = communication._phone_text()
            communication.body = without_portal_tokens(text)
            jobs.append(Job(ids=[communication.id],
                    provider=CHANNEL_PROVIDER[communication.channel],
                    what="%s to %s" % ('SMS' if communication.channel == 'sms'
                        else 'Call', number),
                    outgoing=Outgoing(key=communication.idempotency_key,
                        channel=communication.channel, to=number, text=text,
                        language=debtor.language)))
        return jobs

    @classmethod
    def _letter_groups(cls, communications):
        letters = OrderedDict()
        for communication in communications:
            key = (communication.item.debtor, communication.step,
                communication.run_date)
            letters.setdefault(key, []).append(communication)
        for group in letters.values():
            # Kept once given: a resent letter has the same key.
            letter_key = min((c.letter_key for c in group if c.letter_key),
                default=None) or cls.new_reference()
            for communication in group:
                communication.letter_key = letter_key
        return letters

    @classmethod
    def _prepare_letters(cls, communications, events, today):
        jobs = []
        for (debtor, step, run_date), group in cls._letter_groups(
                communications).items():
            if not (debtor.street and debtor.city):
                for communication in group:
                    communication._fail(
                        "The debtor has no postal address", events, today)
                continue
            pdf, subject = cls._render_letter(group)
            recipient = {'name': debtor.name, 'street': debtor.street,
                'postal_code': debtor.postal_code or '',
                'city': debtor.city, 'country': debtor.country or 'NL'}
            address = ', '.join(filter(None, [debtor.street,
                        debtor.postal_code, debtor.city]))
            for communication in group:
                communication.letter_pdf = pdf
                communication.subject = subject
                communication.recipient = address
            administration = group[0].item.administration
            if getattr(administration, 'letters_self_posted', False):
                for communication in group:
                    communication.provider = 'self'
                    communication.state = 'queued'
                    communication.status_at = datetime.datetime.now()
                    events.append(communication._event('queued',
                            "Letter ready to post in-house: %s" % subject,
                            today))
                continue
            jobs.append(Job(ids=[c.id for c in group],
                    provider=CHANNEL_PROVIDER['letter'],
                    what="Letter to %s" % address,
                    outgoing=Outgoing(key=group[0].letter_key,
                        channel='letter', pdf=pdf, recipient=recipient,
                        language=debtor.language)))
        return jobs

    @classmethod
    def record(cls, job, receipt=None, error=None):
        """Record what the provider answered, in a fresh transaction: a
        status report may have come back first, and is kept."""
        return cls.record_all([(job, receipt, error)])

    @classmethod
    def record_all(cls, answers):
        """`record` for a sender's batch, [(job, receipt, error)], in one
        transaction: what a provider took in one statement per message
        (`_record_receipt`), the others saved together. Returns how many
        were handed over."""
        pool = Pool()
        today = pool.get('ir.date').today()
        communications = cls.browse(
            [i for job, _, _ in answers for i in job.ids])
        by_id = {c.id: c for c in communications}
        events, refused = [], []
        for job, receipt, error in answers:
            for communication in (by_id[i] for i in job.ids):
                if receipt:
                    events.append(communication._event('sent',
                            "%s (%s, %s)" % (job.what, job.provider,
                                receipt.state), today))
                elif communication._record_refusal(error, events, today):
                    refused.append(communication)
        cls.save(refused)
        pool.get('payt.event').save(events)
        received = [(job, receipt) for job, receipt, _ in answers if receipt]
        now = datetime.datetime.now()
        for job, receipt in received:
            cls._record_receipt(job, receipt, now)
        if received:
            invalidate_caches()
        return sum(len(job.ids) for job, _ in received)

    def _record_refusal(self, error, events, today):
        "Whether the provider's refusal changed this one (to be saved)."
        if self.state != 'pending':
            return False
        if error.retry:
            if not error.ambiguous:
                # Refused, so not sent: a later sender may try at once.
                self.attempt_at = None
            self.error = str(error)[:1000]
        else:
            self._fail(str(error), events, today)
        return True

    @classmethod
    def _record_receipt(cls, job, receipt, now):
        """The provider and its reference on the job's rows (kept where a
        status report set them first), and the state the receipt reports
        where that moves it forward: one statement."""
        table = cls.__table__()
        earlier = [s for s, r in RANK.items()
            if r < RANK.get(receipt.state, 1)]
        moves = table.state.in_(earlier)
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.update(
                [table.provider, table.provider_id, table.sent_at,
                    table.state, table.status_at, table.error,
                    table.write_uid, table.write_date],
                [job.provider,
                    Coalesce(table.provider_id, receipt.provider_id),
                    Coalesce(table.sent_at, now),
                    Case((moves, receipt.state), else_=table.state),
                    Case((moves, now), else_=table.status_at),
                    Case((moves, Null), else_=table.error),
                    Transaction().user, CurrentTimestamp()],
                where=table.id.in_(job.ids)))

    @classmethod
    def _deliver_jobs(cls, jobs):
        "Call the providers and record, all in the caller's transaction."
        count, down = 0, set()
        for job in jobs:
            receipt, error = call_provider(job, down)
            count += cls.record(job, receipt, error)
        return count

    @classmethod
    def _render_letter(cls, communications):
        "One PDF for a debtor's items of one step (letter.render_letter)."
        from . import letter as letter_module
        first = communications[0]
        item = first.item
        debtor = item.debtor
        language = debtor.language if debtor.language in (
            letter_module.LABELS) else 'en'
        labels = letter_module.LABELS[language]
        currency = item.currency.code
        items = sorted((c.item for c in communications),
            key=lambda i: (i.due_date, i.id))
        total = sum((i.open_amount for i in items), Decimal(0))
        money = lambda a: letter_module.format_money(a, currency, language)
        paragraphs = [gettext('payt_dunning.' + message, language).format(
                total=money(total))
            for message in ['msg_letter_open_items', 'msg_letter_pay_request']]
        if first.step.action == 'final_notice' and total > 0:
            costs = law.collection_costs(total, debtor.kind)
            paragraphs.append(gettext('payt_dunning.msg_letter_costs',
                    language).format(costs=money(costs.total)))
        company = item.company
        address = company.party.addresses[0] if getattr(
            company.party, 'addresses', None) else None
        # The step's name as the letter's reader reads it.
        with Transaction().set_context(language=language):
            subject = Pool().get('payt.flow.step')(first.step.id).name
        content = letter_module.LetterContent(
            sender=company.rec_name,
            sender_lines=[l for l in (address.full_address.splitlines()
                    if address else []) if l],
            recipient=debtor.name,
            recipient_lines=[l for l in [debtor.street, ' '.join(filter(
                            None, [debtor.postal_code, debtor.city]))] if l],
            date=first.run_date, language=language,
            subject=subject,
            reference='%s %s' % (labels['debtor'], debtor.external_id),
            date_format=date_format(language),
            payment=item.administration.payment_data(debtor,
                [i.number or i.external_id for i in items], total,
                Pool().get('payt.portal.link').url_for(debtor)),
            paragraphs=paragraphs,
            lines=[letter_module.LetterLine(i.number or i.external_id,
                    i.invoice_date, i.due_date, i.amount, i.open_amount)
                for i in items],
            totals=[(labels['total'], total)], currency=currency)
        return letter_module.render_letter(content), subject

    @classmethod
    def letter_batch(cls, administration, date):
        """The day's letters of an administration as one PDF, for posting
        in-house: (number of letters, PDF bytes or None). Letters waiting
        to be posted in-house count as sent once downloaded."""
        from .channel import merge_pdfs
        pool = Pool()
        Event = pool.get('payt.event')
        today = pool.get('ir.date').today()
        communications = cls.search([
                ('item.administration', '=', administration.id),
                ('channel', '=', 'letter'),
                ('run_date', '=', date),
                ('letter_key', '!=', None),
                ], order=[('letter_key', 'ASC'), ('id', 'ASC')])
        pdfs, seen, events = [], set(), []
        for communication in communications:
            if communication.letter_key in seen:
                continue
            seen.add(communication.letter_key)
            if communication.letter_pdf:
                pdfs.append(bytes(communication.letter_pdf))
        for communication in communications:
            if communication.provider == 'self' and (
                    communication.state == 'queued'):
                communication.state = 'sent'
                communication.sent_at = communication.status_at = (
                    datetime.datetime.now())
                events.append(communication._event('sent',
                        "Letter downloaded for posting in-house", today))
        cls.save(communications)
        Event.save(events)
        return len(pdfs), (merge_pdfs(pdfs) if pdfs else None)

    # ------------------------------------------------- status coming back

    @classmethod
    def _handed_to(cls, provider):
        """The communications a provider may report on: of its channels,
        and handed to it (its own, or claimed by a sender whose answer
        from the provider is not recorded yet). Never an email, a letter
        posted in-house, or one still waiting to be sent."""
        return [('channel', 'in', list(PROVIDER_CHANNELS[provider])),
            ['OR',
                ('provider', '=', provider),
                [('provider', '=', None), ('attempt_at', '!=', None)],
                ]]

    @classmethod
    def _reported(cls, provider, report):
        "The communications one report of `provider` is about."
        handed = cls._handed_to(provider)
        found = []
        if report.key:
            # A letter is known by its letter's key, the rest by their own.
            key = 'letter_key' if provider == 'printmail' else (
                'idempotency_key')
            found = cls.search([(key, '=', report.key)] + handed)
        if not found and report.provider_id:
            found = cls.search([
                    ('provider', '=', provider),
                    ('provider_id', '=', report.provider_id)] + handed)
        return found

    @classmethod
    def apply_reports(cls, provider, reports):
        """Status reports of a provider's callback: move each communication
        forward (never back); a returned letter raises attention."""
        pool = Pool()
        Event = pool.get('payt.event')
        Attention = pool.get('payt.attention')
        today = pool.get('ir.date').today()
        updated, events = [], []
        for report in reports:
            found = cls._reported(provider, report)
            for communication in found:
                if communication.state == report.state:
                    continue
                if RANK[report.state] <= RANK[communication.state] and not (
                        report.state == 'failed'
                        and communication.state in ('queued', 'sent')):
                    continue
                now = datetime.datetime.now()
                communication.state = report.state
                communication.status_at = now
                communication.provider = communication.provider or provider
                if report.provider_id and not communication.provider_id:
                    communication.provider_id = report.provider_id
                if report.state in ('sent', 'delivered') and (
                        not communication.sent_at):
                    communication.sent_at = now
                if report.state == 'delivered':
                    communication.delivered_at = now
                if report.error:
                    communication.error = report.error[:1000]
                what = {'sms': "SMS", 'call': "Call", 'letter': "Letter",
                    'email': "Email"}[communication.channel]
                kind = {'queued': 'queued', 'sent': 'sent',
                    'delivered': 'delivered', 'failed': 'failed',
                    'returned': 'returned'}[report.state]
                events.append(communication._event(kind, "%s %s%s" % (
                            what, report.state,
                            ': %s' % report.error if report.error else ''),
                        today))
                if report.state == 'returned':
                    item = communication.item
                    Attention.raise_for(item.administration,
                        'letter_returned', 'msg_attention_letter_returned',
                        note=report.error or communication.recipient,
                        debtor=item.debtor, item=item)
                updated.append(communication)
        cls.save(updated)
        Event.save(events)
        return updated

    @classmethod
    def process_bounce(cls, raw):
        """A bounce or delivery status notification (RFC 3464) about one of
        our emails: a failure marks the communication failed
        (undeliverable) and raises attention "email undeliverable"; a
        success report marks it delivered. Returns the communications."""
        pool = Pool()
        Event = pool.get('payt.event')
        Attention = pool.get('payt.attention')
        today = pool.get('ir.date').today()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        action, diagnostic, message_ids = parse_dsn(message)
        if not message_ids:
            return []
        found = cls.search([
                ('channel', '=', 'email'),
                ('provider', '=', 'smtp'),
                ('message_id', 'in', list(message_ids)),
                ])
        events = []
        for communication in found:
            now = datetime.datetime.now()
            if action == 'failed':
                if communication.state == 'failed':
                    continue
                communication.state = 'failed'
                communication.status_at = now
                communication.error = ("Undeliverable: %s" % (
                        diagnostic or "bounced"))[:1000]
                events.append(communication._event('bounced',
                        communication.error, today))
                item = communication.item
                Attention.raise_for(item.administration,
                    'email_undeliverable', 'msg_attention_email_bounced',
                    note=diagnostic, debtor=item.debtor, item=item,
                    recipient=communication.recipient)
            elif action in ('delivered', 'relayed', 'expanded'):
                if RANK[communication.state] >= RANK['delivered']:
                    continue
                communication.state = 'delivered'
                communication.status_at = communication.delivered_at = now
                events.append(communication._event('delivered',
                        "Email delivered to %s" % communication.recipient,
                        today))
        cls.save(found)
        Event.save(events)
        return found

    def _event(self, kind, detail, date):
        """A timeline event about this communication, rendered in the
        reader's language; `detail` is kept only where it is the provider's
        or the mail server's own words (why it failed)."""
        Event = Pool().get('payt.event')
        text_key = 'msg_event_communication_' + kind
        if kind == 'sent' and self.provider == 'self' and (
                self.state == 'sent'):
            text_key = 'msg_event_communication_posted_in_house'
        note = None
        if kind in {'failed', 'bounced', 'returned'}:
            note = detail.removeprefix("Undeliverable: ")[:1000]
        return Event(company=self.company, item=self.item, date=date,
            kind=kind, step=self.step, communication=self,
            text_key=text_key, text_params=event_params(
                channel=self.channel, recipient=self.recipient or '-'),
            note=note)


def parse_dsn(message):
    """(action, diagnostic, Message-IDs of the original) of a bounce: a
    multipart/report delivery-status (RFC 3464) or a plain bounce that
    quotes the original headers."""
    action, diagnostic, ids = None, None, set()
    for part in message.walk():
        content_type = part.get_content_type()
        if content_type == 'message/delivery-status':
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            if not blocks:
                text = part.get_payload(decode=True) or b''
                blocks = [email.message_from_bytes(block)
                    for block in text.split(b'\n\n') if block.strip()]
            for block in blocks:
                if block.get('Action'):
                    action = action or str(block['Action']).strip().lower()
                if block.get('Diagnostic-Code'):
                    diagnostic = diagnostic or ' '.join(
                        str(block['Diagnostic-Code']).split())
                if block.get('Status') and not diagnostic:
                    diagnostic = 'status %s' % str(block['Status']).strip()
        elif content_type in ('message/rfc822', 'text/rfc822-headers'):
            payload = part.get_payload()
            if isinstance(payload, list):
                inner = payload[0]
            else:
                data = part.get_payload(decode=True) or str(payload).encode()
                inner = email.message_from_bytes(data)
            if inner.get('Message-ID'):
                ids.add(str(inner['Message-ID']).strip())
    if message.get('X-Failed-Recipients') and not action:
        action = 'failed'
    if not ids:
        # A plain bounce quoting the original: look for a Message-ID line.
        body = message.get_body(('plain',))
        text = body.get_content() if body else ''
        for line in text.splitlines():
            if line.lower().startswith('message-id:'):
                ids.add(line.split(':', 1)[1].strip())
                action = action or 'failed'
    return action, diagnostic, ids
