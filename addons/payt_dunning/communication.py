# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Communications: one per (item, step, channel), created by the daily run
and delivered by the sender."""
import datetime
import logging
from email.message import EmailMessage
from email.utils import formataddr, make_msgid

from trytond import config
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.sendmail import send_message_transactional
from trytond.transaction import Transaction

from . import law
from .flow import CHANNELS

logger = logging.getLogger(__name__)


def format_date(date, language):
    "Dates as the debtor writes them: 17-10-2026 in Dutch."
    if not date:
        return ''
    return date.strftime('%d-%m-%Y' if language == 'nl' else '%d/%m/%Y')


def format_money(amount, currency, language):
    "EUR 1.234,56 in Dutch, EUR 1,234.56 in English."
    text = '{:,.{}f}'.format(amount, currency.digits)
    if language == 'nl':
        text = text.translate(str.maketrans(',.', '.,'))
    return '%s %s' % (currency.code, text)


class Communication(ModelSQL, ModelView):
    "Communication"
    __name__ = 'payt.communication'
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    item = fields.Many2One('payt.item', "Open Item", required=True,
        readonly=True, ondelete='CASCADE')
    debtor = fields.Function(
        fields.Many2One('payt.debtor', "Debtor"), 'get_debtor')
    step = fields.Many2One('payt.flow.step', "Step", required=True,
        readonly=True, ondelete='RESTRICT')
    channel = fields.Selection(CHANNELS, "Channel", required=True,
        readonly=True)
    run_date = fields.Date("Run Date", required=True, readonly=True)
    state = fields.Selection([
            ('pending', "Pending"),
            ('sent', "Sent"),
            ('failed', "Failed"),
            ], "State", required=True, readonly=True)
    sent_at = fields.Timestamp("Sent At", readonly=True)
    recipient = fields.Char("Recipient", readonly=True)
    subject = fields.Char("Subject", readonly=True)
    body = fields.Text("Body", readonly=True)
    message_id = fields.Char("Message-ID", readonly=True)
    error = fields.Char("Error", readonly=True)

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
        cls._order = [('run_date', 'DESC'), ('id', 'DESC')]

    @staticmethod
    def default_state():
        return 'pending'

    def get_debtor(self, name):
        return self.item.debtor.id

    def template_values(self):
        item = self.item
        language = item.debtor.language
        today = Pool().get('ir.date').today()
        return {
            'debtor_name': item.debtor.name,
            'company': item.company.rec_name,
            'invoice_number': item.number or item.external_id,
            'invoice_date': format_date(item.invoice_date, language),
            'due_date': format_date(item.due_date, language),
            'amount': format_money(item.amount, item.currency, language),
            'open_amount': format_money(
                item.open_amount, item.currency, language),
            'currency': item.currency.code,
            'days_overdue': (today - item.due_date).days,
            'description': item.description or '',
            'collection_costs': self._collection_costs(),
            }

    def _collection_costs(self):
        "Statutory costs the final notice must state exactly (WIK)."
        item = self.item
        if item.open_amount <= 0:
            return ''
        costs = law.collection_costs(item.open_amount, item.debtor.kind)
        return format_money(costs.total, item.currency, item.debtor.language)

    def render(self):
        "Fill subject and body from the step's template in the debtor's language."
        debtor = self.item.debtor
        template = self.step.template_for(debtor.language, debtor.kind)
        if not template:
            return None, None
        return template.render(self.template_values())

    @classmethod
    def send_pending(cls, administration=None, limit=None):
        """Deliver pending email communications through Tryton's SMTP
        setting; the mail leaves when the transaction commits, so a
        communication marked sent is one whose transaction committed."""
        pool = Pool()
        Event = pool.get('payt.event')
        domain = [('state', '=', 'pending'), ('channel', '=', 'email')]
        if administration:
            domain.append(('item.administration', '=', administration.id))
        communications = cls.search(domain, limit=limit, order=[('id', 'ASC')])
        from_addr = config.get('email', 'from')
        today = pool.get('ir.date').today()
        events, sent = [], 0
        for communication in communications:
            debtor = communication.item.debtor
            subject, body = communication.render()
            error = None
            if not debtor.email:
                error = "The debtor has no email address"
            elif subject is None:
                error = "Step %s has no template" % communication.step.rec_name
            if error:
                communication.state = 'failed'
                communication.error = error
                events.append(communication._event('failed', error, today))
                continue
            msg = EmailMessage()
            msg['From'] = formataddr(
                (communication.company.rec_name, from_addr))
            msg['To'] = debtor.email
            msg['Subject'] = subject
            msg['Message-ID'] = make_msgid(domain=from_addr.split('@')[-1])
            msg.set_content(body)
            send_message_transactional(msg, strict=True)
            communication.state = 'sent'
            communication.sent_at = datetime.datetime.now()
            communication.recipient = debtor.email
            communication.subject = subject
            communication.body = body
            communication.message_id = msg['Message-ID']
            events.append(communication._event(
                    'sent', "Email to %s: %s" % (debtor.email, subject),
                    today))
            sent += 1
        cls.save(communications)
        Event.save(events)
        return sent

    def _event(self, kind, description, date):
        Event = Pool().get('payt.event')
        return Event(company=self.company, item=self.item, date=date,
            kind=kind, step=self.step, communication=self,
            description=description[:1000])
