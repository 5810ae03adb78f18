# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The timeline of an open item: everything sent or done, in order.

An event stores what happened as a message key (an ``ir.message`` of this
module) with its parameters, not as a sentence: the description is
rendered when read, in the reader's language, with dates and amounts
formatted for that language and steps under their translated names.
"""
import datetime
import json
from decimal import Decimal

from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

from .company import CompanyConsistentMixin

EVENT_KINDS = [
    ('imported', "Imported"),
    ('step', "Step reached"),
    ('skipped', "Step skipped"),
    ('paused', "Paused"),
    ('stopped', "Stopped"),
    ('resumed', "Resumed"),
    ('sent', "Sent"),
    ('failed', "Sending failed"),
    ('payment', "Payment"),
    ('paid', "Paid"),
    ('reopened', "Reopened"),
    ('attention', "Attention"),
    ('queued', "Queued at provider"),
    ('delivered', "Delivered"),
    ('returned', "Returned"),
    ('bounced', "Bounced"),
    ('plan', "Payment plan"), ('message', "Message"), ('online', "Online payment"),
    ]

# Parameters whose stored value is rendered for the reader: a record id
# becomes its (translated) name, a selection key its translated label.
RECORD_PARAMS = {'step': 'payt.flow.step'}
SELECTION_PARAMS = {
    'channel': ('payt.communication', 'channel'),
    'case_step': ('payt.case.letter', 'step'),
    'scope': ('payt.pause', 'scope'),
    'letter_channel': ('payt.case.letter', 'channel'),
    }


def event_params(**params):
    "The parameters of an event as stored: JSON, dates and amounts as text."
    def plain(value):
        if isinstance(value, (datetime.date, Decimal)):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return getattr(value, 'id', value)
    return json.dumps({k: plain(v) for k, v in params.items()
            if v is not None}, sort_keys=True)


class Event(CompanyConsistentMixin, ModelSQL, ModelView):
    "Timeline Event"
    __name__ = 'payt.event'
    __string__ = "Timeline Event"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    item = fields.Many2One(
        'payt.item', "Open Item", required=True, readonly=True,
        ondelete='CASCADE')
    date = fields.Date("Date", required=True, readonly=True)
    kind = fields.Selection(EVENT_KINDS, "Kind", required=True,
        readonly=True)
    step = fields.Many2One('payt.flow.step', "Step", readonly=True,
        ondelete='SET NULL')
    communication = fields.Many2One(
        'payt.communication', "Communication", readonly=True,
        ondelete='SET NULL')
    text_key = fields.Char("Text Key", readonly=True,
        help="The message of this module that describes the event.")
    text_params = fields.Text("Text Parameters", readonly=True,
        help="The values the message shows, as JSON.")
    note = fields.Char("Note", readonly=True,
        help="Text as written by a person or a provider, not translated.")
    description = fields.Function(fields.Char("Description"),
        'get_description')
    user = fields.Function(fields.Many2One('res.user', "By"), 'get_user')
    by = fields.Function(fields.Char("By"), 'get_by')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.item, Index.Range())))
        cls._order = [('date', 'ASC'), ('id', 'ASC')]

    @classmethod
    def __register__(cls, module):
        # Events used to store an English sentence; it becomes the note.
        keep_sentences_as_notes(cls.__table_handler__(module))
        super().__register__(module)

    def get_user(self, name):
        # The cron and the command line run as root: no person did it.
        if self.create_uid and self.create_uid.id != 0:
            return self.create_uid.id

    def get_by(self, name):
        if self.user:
            return self.user.rec_name
        return gettext('payt_dunning.msg_event_by_automatic_run')

    def get_description(self, name):
        return render_text(self.text_key, self.text_params, self.note,
            self.company.currency)


def keep_sentences_as_notes(table_h):
    """Migration of a table that stored English sentences in `description`
    (events, points of attention): they become the untranslated note."""
    if (table_h.column_exist('description')
            and not table_h.column_exist('note')):
        table_h.column_rename('description', 'note')


def render_text(text_key, text_params, note, currency):
    """A message of this module with its stored parameters, in the reader's
    language (timeline events and points of attention); the note, written
    by a person or a provider, follows untranslated."""
    if not text_key:
        return note
    text = gettext('payt_dunning.' + text_key,
        **_rendered_params(text_params, currency))
    if note:
        text = '%s: %s' % (text, note)
    return text


def _rendered_params(text_params, currency):
    from .communication import format_date, format_money
    language = Transaction().language
    params = json.loads(text_params or '{}')
    rendered = {}
    for name, value in params.items():
        if name in RECORD_PARAMS:
            value = _names(RECORD_PARAMS[name], [value]) or value
        elif name in SELECTION_PARAMS:
            value = _selection_label(*SELECTION_PARAMS[name], value)
        elif name == 'steps':
            value = _names('payt.flow.step', value)
        elif name.endswith('date'):
            value = format_date(
                datetime.date.fromisoformat(value), language)
        elif name.endswith('amount'):
            value = format_money(Decimal(value), currency, language)
        rendered[name] = value
    return rendered


def _names(model, ids):
    "The names of the records, in the reader's language; deleted ones left out."
    Model = Pool().get(model)
    records = Model.search([('id', 'in', ids)])
    return ', '.join(r.rec_name for r in sorted(records,
                key=lambda r: ids.index(r.id)))


def _selection_label(model, field, value):
    "The label of a selection value in the reader's language."
    Model = Pool().get(model)
    selection = Model.fields_get([field])[field]['selection']
    return dict(selection).get(value, value)
