# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Messages between creditor and debtor, per item or case.

A thread lives on the item's timeline. A message from the creditor (written
in the client) is emailed to the debtor with the portal link; a message from
the debtor (written in the portal) raises the attention "unread debtor
message" until someone marks it read."""
import datetime
import logging
from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction, without_check_access
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .company import CompanyConsistentMixin
from .timeline import event_params

logger = logging.getLogger(__name__)

MAX_BODY = 5000


def mail_text(key, language):
    """The email's text `key` (message msg_message_<key>): Dutch from
    locale/nl.po, English for a language without translation."""
    return gettext('payt_dunning.msg_message_' + key, language)


class Message(CompanyConsistentMixin, ModelSQL, ModelView):
    "Debtor Message"
    __name__ = 'payt.message'
    __string__ = "Debtor Message"
    # The view makes them read-only once saved; so does the server.
    _readonly_after_create = {'administration', 'debtor', 'item', 'case',
        'body'}
    company = fields.Many2One('company.company', "Company", required=True,
        readonly=True)
    administration = fields.Many2One('payt.administration',
        "Administration", required=True, ondelete='CASCADE',
        states={'readonly': Eval('id', -1) >= 0})
    debtor = fields.Many2One('payt.debtor', "Debtor", required=True,
        ondelete='CASCADE',
        domain=[('administration', '=', Eval('administration', -1))],
        states={'readonly': Eval('id', -1) >= 0})
    item = fields.Many2One('payt.item', "Open Item", ondelete='CASCADE',
        domain=[('debtor', '=', Eval('debtor', -1))],
        states={'readonly': Eval('id', -1) >= 0})
    case = fields.Many2One('payt.case', "Collection Case",
        ondelete='CASCADE', domain=[('debtor', '=', Eval('debtor', -1))],
        states={'readonly': Eval('id', -1) >= 0})
    direction = fields.Selection([
            ('in', "From debtor"),
            ('out', "To debtor"),
            ], "Direction", required=True, readonly=True)
    author = fields.Char("Author", readonly=True)
    body = fields.Text("Message", required=True,
        states={'readonly': Eval('id', -1) >= 0})
    sent_at = fields.Timestamp("Written At", readonly=True)
    seen = fields.Boolean("Read", readonly=True,
        help="From the debtor: read by the creditor. "
        "To the debtor: seen in the portal.")
    read_at = fields.Timestamp("Read At", readonly=True)
    read_by = fields.Many2One('res.user', "Read By", readonly=True)
    emailed = fields.Boolean("Emailed", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.debtor, Index.Range())))
        cls._order = [('sent_at', 'ASC'), ('id', 'ASC')]
        cls._buttons.update({
                'mark_read': {
                    'invisible': (Eval('seen', False)
                        | (Eval('direction') != 'in')),
                    'depends': ['seen', 'direction'],
                    },
                'mark_unread': {
                    'invisible': (~Eval('seen', False)
                        | (Eval('direction') != 'in')),
                    'depends': ['seen', 'direction'],
                    },
                'reply': {
                    'invisible': Eval('direction') != 'in',
                    'depends': ['direction'],
                    },
                })

    @staticmethod
    def default_direction():
        return 'out'

    @staticmethod
    def default_seen():
        return False

    @staticmethod
    def default_emailed():
        return False

    @staticmethod
    def default_company():
        return Transaction().context.get('company')

    @fields.depends('item', 'case', 'debtor', 'administration')
    def on_change_item(self):
        if self.item:
            self.debtor = self.item.debtor
            self.administration = self.item.administration

    @fields.depends('case', 'debtor', 'administration')
    def on_change_case(self):
        if self.case:
            self.debtor = self.case.debtor
            self.administration = self.case.administration

    @fields.depends('debtor', 'administration')
    def on_change_debtor(self):
        if self.debtor:
            self.administration = self.debtor.administration

    def get_rec_name(self, name):
        text = (self.body or '').strip().splitlines()
        return (text[0][:60] if text else '') or str(self.id)

    @classmethod
    def validate_fields(cls, messages, field_names):
        super().validate_fields(messages, field_names)
        for message in messages:
            if not (message.body or '').strip():
                raise UserError(gettext('payt_dunning.msg_message_empty'))
            if len(message.body) > MAX_BODY:
                raise UserError(gettext('payt_dunning.msg_message_too_long',
                        size=MAX_BODY))
            for record in (message.item, message.case):
                if record and record.debtor != message.debtor:
                    raise UserError(gettext(
                            'payt_dunning.msg_message_debtor'))

    @classmethod
    def create(cls, vlist):
        user = Transaction().user
        User = Pool().get('res.user')
        vlist = [v.copy() for v in vlist]
        for values in vlist:
            values.setdefault('sent_at', datetime.datetime.now())
            if values.get('direction', 'out') == 'out' and not values.get(
                    'author') and user:
                values['author'] = User(user).name
            if not values.get('company') and values.get('administration'):
                Administration = Pool().get('payt.administration')
                values['company'] = Administration(
                    values['administration']).company.id
        messages = super().create(vlist)
        # The timeline and attention are the system's, not the writer's.
        with without_check_access():
            for message in messages:
                message.__class__(message.id)._on_new()
        return messages

    def items(self):
        if self.item:
            return [self.item]
        if self.case:
            return list(self.case.items)
        return []

    def _first_line(self):
        return (self.body or '').strip().splitlines()[0][:200]

    def _on_new(self):
        pool = Pool()
        Event = pool.get('payt.event')
        today = pool.get('ir.date').today()
        first = self._first_line()
        Event.create([{'company': self.company.id, 'item': item.id,
                    'date': today, 'kind': 'message',
                    'text_key': 'msg_event_message_' + self.direction,
                    'text_params': event_params(text=first)}
                for item in self.items()])
        if self.direction == 'in':
            self._raise_unread()
        else:
            self._email_debtor()

    def _raise_unread(self):
        "The attention to read the debtor's message (one per thread)."
        Attention = Pool().get('payt.attention')
        Attention.raise_for(self.administration, 'unread_message',
            'msg_attention_unread_message', note=self._first_line(),
            debtor=self.debtor, item=self.item, debtor_name=self.debtor.name)

    def _email_debtor(self):
        "A row of the outbox, delivered now: the writer expects it to go."
        from .communication import PORTAL_LINK
        Communication = Pool().get('payt.communication')
        debtor = self.debtor
        language = debtor.language or 'nl'
        about = ''
        if self.item:
            about = mail_text('about', language) % (
                self.item.number or self.item.external_id)
        values = {'debtor': debtor.name, 'company': self.company.rec_name,
            'about': about, 'text': self.body,
            'portal_url': PORTAL_LINK}
        item = self.item or (self.case.items[0] if self.case and (
                self.case.items) else None)
        communication = Communication.notify('message', debtor, item,
            mail_text('subject', language) % values,
            mail_text('body', language) % values)
        for sent in Communication.notify_now([communication]):
            if sent.state == 'sent':
                self.emailed = True
                self.save()

    @classmethod
    @ModelView.button
    def mark_read(cls, messages):
        "The creditor read the debtor's messages: their attention is done."
        Attention = Pool().get('payt.attention')
        incoming = [m for m in messages if m.direction == 'in']
        cls.write(incoming, {'seen': True,
                'read_at': datetime.datetime.now(),
                'read_by': Transaction().user})
        for message in incoming:
            unread = cls.search([('debtor', '=', message.debtor.id),
                    ('direction', '=', 'in'), ('seen', '=', False),
                    ('item', '=', message.item.id if message.item else None)])
            if not unread:
                attentions = Attention.search([
                        ('debtor', '=', message.debtor.id),
                        ('item', '=',
                            message.item.id if message.item else None),
                        ('reason', '=', 'unread_message'),
                        ('state', '=', 'open')])
                if attentions:
                    Attention.resolve(attentions)

    @classmethod
    @ModelView.button
    def mark_unread(cls, messages):
        """The debtor's messages are to be read again (marked read by
        mistake, or left for a colleague): their attention is back."""
        incoming = [m for m in messages if m.direction == 'in']
        cls.write(incoming, {'seen': False, 'read_at': None,
                'read_by': None})
        for message in incoming:
            message._raise_unread()

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_message_reply')
    def reply(cls, messages):
        pass


class ReplyStart(ModelView):
    "Reply to the Debtor"
    __name__ = 'payt.message.reply.start'
    __string__ = "Reply to the Debtor"
    debtor = fields.Many2One('payt.debtor', "Debtor", readonly=True)
    original = fields.Text("Their Message", readonly=True)
    body = fields.Text("Your Reply", required=True,
        help="Emailed to the debtor with the link to the portal.")


class Reply(Wizard):
    "Reply to the Debtor"
    __name__ = 'payt.message.reply'
    __string__ = "Reply to the Debtor"
    start = StateView('payt.message.reply.start',
        'payt_dunning.message_reply_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Send", 'send', 'tryton-ok', default=True),
            ])
    send = StateTransition()

    def default_start(self, fields):
        return {'debtor': self.record.debtor.id,
            'original': self.record.body}

    def transition_send(self):
        "The reply goes on the same thread; the debtor's message is read."
        Message = Pool().get('payt.message')
        original = self.record
        Message.create([{
                    'administration': original.administration.id,
                    'debtor': original.debtor.id,
                    'item': original.item.id if original.item else None,
                    'case': original.case.id if original.case else None,
                    'direction': 'out',
                    'body': self.start.body,
                    }])
        Message.mark_read([original])
        return 'end'


class Debtor(metaclass=PoolMeta):
    __name__ = 'payt.debtor'
    messages = fields.One2Many('payt.message', 'debtor', "Messages",
        readonly=True)


class OpenItem(metaclass=PoolMeta):
    __name__ = 'payt.item'
    messages = fields.One2Many('payt.message', 'item', "Messages",
        readonly=True)
