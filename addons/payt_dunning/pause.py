# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Pause, resume and stop follow-up of an item, a debtor or a whole
administration, with a reason and an optional end date."""
from sql.functions import CurrentTimestamp

from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, fields
from trytond.model.exceptions import ValidationError
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .bulk import const, invalidate_caches
from .company import CompanyConsistentMixin
from .timeline import event_params

FOLLOW_UP = [
    ('active', "Active"),
    ('paused', "Paused"),
    ('stopped', "Stopped"),
    ]


# The timeline event that records each change of follow-up.
EVENT_OF = {'pause': 'paused', 'stop': 'stopped', 'resumed': 'resumed'}


class Pause(CompanyConsistentMixin, ModelSQL, ModelView):
    "Follow-up Pause"
    __name__ = 'payt.pause'
    __string__ = "Follow-up Pause"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        readonly=True, ondelete='CASCADE')
    debtor = fields.Many2One(
        'payt.debtor', "Debtor", readonly=True, ondelete='CASCADE')
    item = fields.Many2One(
        'payt.item', "Open Item", readonly=True, ondelete='CASCADE')
    scope = fields.Function(fields.Selection([
                ('administration', "Administration"),
                ('debtor', "Debtor"),
                ('item', "Open Item"),
                ], "Scope"), 'get_scope')
    kind = fields.Selection([
            ('pause', "Pause"),
            ('stop', "Stop"),
            ], "Kind", required=True, readonly=True)
    reason = fields.Text("Reason", required=True, readonly=True)
    automatic = fields.Char("Automatic Cause", readonly=True,
        help="Set when the system paused by itself, e.g. import_failing.")
    start_date = fields.Date("Start Date", required=True, readonly=True)
    end_date = fields.Date("End Date", readonly=True,
        help="Follow-up resumes by itself the day after.")
    state = fields.Selection([
            ('active', "Active"),
            ('lifted', "Lifted"),
            ], "State", required=True, readonly=True)
    lifted_date = fields.Date("Lifted On", readonly=True)
    lifted_by = fields.Many2One('res.user', "Lifted By", readonly=True)
    paused_by = fields.Function(
        fields.Many2One('res.user', "Paused By"), 'get_paused_by')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order.insert(0, ('start_date', 'DESC'))

    @staticmethod
    def default_state():
        return 'active'

    @staticmethod
    def default_kind():
        return 'pause'

    def get_scope(self, name):
        if self.item:
            return 'item'
        if self.debtor:
            return 'debtor'
        return 'administration'

    def get_paused_by(self, name):
        return self.create_uid.id if self.create_uid else None

    @classmethod
    def validate_fields(cls, pauses, field_names):
        super().validate_fields(pauses, field_names)
        for pause in pauses:
            if not (pause.reason or '').strip():
                raise ValidationError(
                    gettext('payt_dunning.msg_pause_reason_required'))
            if pause.end_date and pause.end_date < pause.start_date:
                raise ValidationError(gettext(
                        'payt_dunning.msg_pause_end_before_start',
                        end=pause.end_date, start=pause.start_date))

    @classmethod
    def hold(cls, records, kind, reason, end_date=None, automatic=None):
        "Pause or stop follow-up of items, debtors or administrations."
        Date = Pool().get('ir.date')
        today = Date.today()
        pauses = cls.create([dict(
                    record.pause_scope(),
                    company=record.company.id, kind=kind, reason=reason,
                    start_date=today,
                    end_date=end_date if kind == 'pause' else None,
                    automatic=automatic)
                for record in records])
        for pause in pauses:
            pause._record_on_timeline(kind, reason, end_date)
        return pauses

    @classmethod
    def lift(cls, pauses, date=None, automatic=False):
        "Resume follow-up: lift the pauses and note it on the timelines."
        if not pauses:
            return
        Date = Pool().get('ir.date')
        date = date or Date.today()
        user = None if automatic else Transaction().user
        cls.write(pauses, {
                'state': 'lifted',
                'lifted_date': date,
                'lifted_by': user,
                })
        for pause in pauses:
            pause._record_on_timeline('resumed', None,
                pause.end_date if automatic else None)

    def _record_on_timeline(self, kind, reason, end_date):
        "One timeline event on every open item the pause covers."
        pool = Pool()
        Item = pool.get('payt.item')
        Event = pool.get('payt.event')
        item = Item.__table__()
        event = Event.__table__()
        cursor = Transaction().connection.cursor()
        where = (item.administration == self.administration.id) & (
            item.state == 'open')
        if self.debtor:
            where &= item.debtor == self.debtor.id
        if self.item:
            where &= item.id == self.item.id
        text_key = 'msg_event_' + EVENT_OF[kind]
        if end_date:
            text_key += '_automatically' if kind == 'resumed' else '_until'
        text_params = event_params(
            scope=self.scope, reason=reason, end_date=end_date)
        user = Transaction().user
        cursor.execute(*event.insert(
                [event.company, event.item, event.date, event.kind,
                    event.text_key, event.text_params, event.create_uid,
                    event.create_date],
                item.select(
                    item.company, item.id, const(self.start_date
                        if kind != 'resumed' else
                        (self.lifted_date or self.start_date), 'DATE'),
                    const(EVENT_OF[kind], 'VARCHAR'),
                    const(text_key, 'VARCHAR'), const(text_params, 'VARCHAR'),
                    const(user, 'INTEGER'),
                    CurrentTimestamp(), where=where)))
        invalidate_caches()


class PausableMixin:
    "Follow-up state and the pause/stop/resume buttons of a record."
    __slots__ = ()
    follow_up = fields.Function(
        fields.Selection(FOLLOW_UP, "Follow-up"), 'get_follow_up')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._buttons.update({
                'pause': {
                    'invisible': Eval('follow_up') != 'active',
                    'depends': ['follow_up'],
                    },
                'stop': {
                    'invisible': Eval('follow_up') == 'stopped',
                    'depends': ['follow_up'],
                    },
                'resume': {
                    'invisible': Eval('follow_up') == 'active',
                    'depends': ['follow_up'],
                    },
                })

    def pause_scope(self):
        raise NotImplementedError

    def _own_pauses(self):
        Pause = Pool().get('payt.pause')
        domain = [('state', '=', 'active')]
        scope = self.pause_scope()
        for name in ['administration', 'debtor', 'item']:
            domain.append((name, '=', scope.get(name)))
        return Pause.search(domain)

    @classmethod
    def get_follow_up(cls, records, name):
        "Own state: stopped beats paused beats active."
        Pause = Pool().get('payt.pause')
        today = Pool().get('ir.date').today()
        result = {r.id: 'active' for r in records}
        field = cls._pause_field()
        domain = [
            ('state', '=', 'active'),
            (field, 'in', [r.id for r in records]),
            ['OR', ('end_date', '=', None), ('end_date', '>=', today)],
            ]
        if field == 'administration':
            domain += [('debtor', '=', None), ('item', '=', None)]
        elif field == 'debtor':
            domain.append(('item', '=', None))
        for pause in Pause.search(domain):
            record_id = getattr(pause, field).id
            if pause.kind == 'stop' or result[record_id] == 'active':
                result[record_id] = (
                    'stopped' if pause.kind == 'stop' else 'paused')
        return result

    @classmethod
    def _pause_field(cls):
        return {
            'payt.administration': 'administration',
            'payt.debtor': 'debtor',
            'payt.item': 'item',
            }[cls.__name__]

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_pause')
    def pause(cls, records):
        pass

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_stop')
    def stop(cls, records):
        pass

    @classmethod
    @ModelView.button
    def resume(cls, records):
        Pause = Pool().get('payt.pause')
        pauses = []
        for record in records:
            pauses.extend(record._own_pauses())
        Pause.lift(pauses)


class PauseStart(ModelView):
    "Pause Follow-up"
    __name__ = 'payt.pause.start'
    __string__ = "Pause Follow-up"
    reason = fields.Text("Reason", required=True)
    end_date = fields.Date("End Date",
        states={'invisible': Eval('kind') == 'stop'},
        help="Leave empty to pause until resumed by hand.")
    kind = fields.Selection([
            ('pause', "Pause"),
            ('stop', "Stop"),
            ], "Kind", readonly=True)


class PauseWizard(Wizard):
    "Pause Follow-up"
    __name__ = 'payt.pause.wizard'
    __string__ = "Pause Follow-up"
    _kind = 'pause'
    start = StateView('payt.pause.start',
        'payt_dunning.pause_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("OK", 'hold', 'tryton-ok', default=True),
            ])
    hold = StateTransition()

    def default_start(self, fields):
        return {'kind': self._kind}

    def transition_hold(self):
        "The pause itself checks that its end date is not in the past."
        Pause = Pool().get('payt.pause')
        end_date = self.start.end_date if self._kind == 'pause' else None
        Pause.hold(self._records_to_hold(), self._kind, self.start.reason,
            end_date)
        return 'end'

    def _records_to_hold(self):
        return self.records


class StopWizard(PauseWizard):
    "Stop Follow-up"
    __name__ = 'payt.stop.wizard'
    __string__ = "Stop Follow-up"
    _kind = 'stop'
