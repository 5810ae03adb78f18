# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Points of attention: what a person should look at.

Like a timeline event, a point of attention stores its text as a message
key of this module with parameters; its description is rendered when read,
in the reader's language. A provider's error or a debtor's words are kept
as the note, untranslated."""
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction

from .company import CompanyConsistentMixin
from .timeline import event_params, keep_sentences_as_notes, render_text

REASONS = [
    ('unread_message', "Unread debtor message"),
    ('open_note', "Open note"),
    ('plan_term_expired', "Payment plan term expired"),
    ('missing_pdf', "Missing invoice PDF"),
    ('email_undeliverable', "Email undeliverable"),
    ('online_payment', "Online payment registered"),
    ('below_minimum', "Below minimum amount"),
    ('plan_requested', "Payment plan requested"),
    ('letter_returned', "Letter returned"),
    ('booking_error', "Possible booking error"),
    ('import_failing', "Import failing"),
    ('import_mismatch', "Import differs from the accounting package"),
    ('details_changed', "Debtor details change requested"),
    ('webhook_failing', "Webhook deactivated"),
    ]


class Attention(CompanyConsistentMixin, ModelSQL, ModelView):
    "Point of Attention"
    __name__ = 'payt.attention'
    __string__ = "Point of Attention"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        readonly=True, ondelete='CASCADE')
    debtor = fields.Many2One('payt.debtor', "Debtor", readonly=True,
        ondelete='CASCADE')
    item = fields.Many2One('payt.item', "Open Item", readonly=True,
        ondelete='CASCADE')
    reason = fields.Selection(REASONS, "Reason", required=True,
        readonly=True)
    text_key = fields.Char("Text Key", readonly=True,
        help="The message of this module that describes it.")
    text_params = fields.Text("Text Parameters", readonly=True,
        help="The values the message shows, as JSON.")
    note = fields.Char("Note", readonly=True,
        help="Text as written by a person or a provider, not translated.")
    description = fields.Function(fields.Char("Description"),
        'get_description')
    date = fields.Date("Date", required=True, readonly=True)
    state = fields.Selection([
            ('open', "Open"),
            ('resolved', "Resolved"),
            ], "State", required=True, readonly=True)
    resolved_by = fields.Many2One('res.user', "Resolved By", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t,
                (t.administration, Index.Range()),
                (t.reason, Index.Equality(cardinality='low')),
                where=t.state == 'open'))
        cls._order = [('date', 'DESC'), ('id', 'DESC')]
        cls._buttons.update({
                'resolve': {
                    'invisible': Eval('state') != 'open',
                    'depends': ['state'],
                    },
                })

    @classmethod
    def __register__(cls, module):
        # Points of attention used to store an English sentence: the note.
        keep_sentences_as_notes(cls.__table_handler__(module))
        super().__register__(module)

    def get_description(self, name):
        return render_text(self.text_key, self.text_params, self.note,
            self.company.currency)

    @staticmethod
    def default_state():
        return 'open'

    @classmethod
    def default_date(cls):
        return Pool().get('ir.date').today()

    @classmethod
    def raise_for(cls, administration, reason, text_key, note=None,
            debtor=None, item=None, **params):
        """Open a point of attention unless the same one is already open;
        text_key names a message of this module, params its values."""
        existing = cls.search([
                ('administration', '=', administration.id),
                ('reason', '=', reason),
                ('debtor', '=', debtor.id if debtor else None),
                ('item', '=', item.id if item else None),
                ('state', '=', 'open'),
                ], limit=1)
        if existing:
            return existing[0]
        attention = cls(company=administration.company,
            administration=administration, debtor=debtor, item=item,
            reason=reason, text_key=text_key,
            text_params=event_params(**{
                    k: '-' if v is None else v for k, v in params.items()}),
            note=note[:1000] if note else None)
        attention.save()
        return attention

    @classmethod
    @ModelView.button
    def resolve(cls, attentions):
        cls.write(attentions, {
                'state': 'resolved',
                'resolved_by': Transaction().user,
                })
        cls._read_messages(
            [a for a in attentions if a.reason == 'unread_message'])

    @classmethod
    def _read_messages(cls, attentions):
        "Resolving an unread message means it was read."
        Message = Pool().get('payt.message')
        domain = ['OR'] + [[
                ('debtor', '=', a.debtor.id if a.debtor else None),
                ('item', '=', a.item.id if a.item else None),
                ] for a in attentions]
        if attentions:
            Message.mark_read(Message.search([
                        ('direction', '=', 'in'), ('seen', '=', False),
                        domain]))
