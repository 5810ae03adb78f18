# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Collection cases under Dutch law (issue 4).

The last step of a flow hands a debtor's unpaid items to a case. A case
escalates through its own steps with one letter per step (exactly once),
charges the statutory collection costs only when the law allows it, accrues
statutory interest and allocates payments costs - interest - principal.
Every figure is stored with its inputs, rule and rates (JSON) so that it
can be recomputed and explained later; the arithmetic is law.py's.
"""
import datetime
import json
from decimal import Decimal

from sql import Null
from sql.aggregate import Max

from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.model import (
    Index, ModelSQL, ModelView, Unique, Workflow, fields)
from trytond.model.exceptions import ValidationError
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Bool, Eval
from trytond.transaction import Transaction
from trytond.wizard import (
    Button, StateAction, StateTransition, StateView, Wizard)

from . import law
from .bulk import invalidate_caches
from .company import CompanyConsistentMixin
from .flow import DEBTOR_KINDS
from .pause import FOLLOW_UP, PauseWizard
from .timeline import event_params

# The steps a case escalates through, in order; 'new' and 'closed' are the
# ends.  Letters are sent on the first three: the bailiff writes his own.
CASE_STEPS = [
    ('reminder', "Reminder"),
    ('second_reminder', "Second reminder"),
    ('notice_of_default', "Notice of default"),
    ('ready', "Ready for bailiff"),
    ('handed_over', "Handed over"),
    ]
ORDER = [s for s, _ in CASE_STEPS]
LETTER_STEPS = ('reminder', 'second_reminder', 'notice_of_default')
STATES = [('new', "New")] + CASE_STEPS + [('closed', "Closed")]
CLOSE_REASONS = [
    (None, ""),
    ('paid', "Paid"),
    ('written_off', "Written off"),
    ('withdrawn', "Withdrawn"),
    ]
# Days after the previous step; None: only by hand.  Reminder 0: the
# (14-day) letter goes out the day the case opens.  A consumer case never
# moves past the reminder before the 14-day term has passed (see _due).
DEFAULT_LEAD = {
    'reminder': 0, 'second_reminder': 7, 'notice_of_default': 14,
    'ready': 14, 'handed_over': None,
    }
LETTER_CHANNELS = [('post', "Post"), ('email', "Email")]
ZERO = Decimal('0.00')
_ro = {'readonly': True}


def _json(value):
    return json.dumps(value, indent=1, sort_keys=True, default=str)


def _today():
    return Pool().get('ir.date').today()


def _case_date():
    "The run passes its date; buttons act today."
    return Transaction().context.get('payt_case_date') or _today()


# --------------------------------------------------------- configuration

def unconfirmed_rate_warnings(rates):
    """One sentence, in the user's language, per rate used that no official
    publication confirms yet (law.py gives it a confidence other than
    'sourced' or 'given')."""
    from .communication import format_date
    language = Transaction().language
    return [gettext('payt_dunning.msg_interest_rate_unconfirmed',
            date=format_date(start, language), rate=rate)
        for start, rate, confidence in rates
        if confidence not in ('sourced', 'given')]


class InterestRate(ModelSQL, ModelView):
    "Statutory Interest Rate"
    __name__ = 'payt.interest.rate'
    __string__ = "Statutory Interest Rate"
    start_date = fields.Date("From", required=True)
    consumer_rate = fields.Numeric("Consumer Rate (%)", digits=(6, 4),
        required=True, help="Art. 6:119 BW (wettelijke rente).")
    commercial_rate = fields.Numeric("Commercial Rate (%)", digits=(6, 4),
        required=True, help="Art. 6:119a BW (wettelijke handelsrente).")
    confidence = fields.Char("Confidence", required=True,
        help="'sourced' or how sure the figure is; anything else gives a "
        "warning on every computation that uses it.")
    note = fields.Text("Note")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('start_date_unique', Unique(t, t.start_date),
                'payt_dunning.msg_interest_rate_unique'),
            ]
        cls._order = [('start_date', 'DESC'), ('id', 'DESC')]

    @staticmethod
    def default_confidence():
        return 'sourced'

    @classmethod
    def validate_fields(cls, rates, field_names):
        super().validate_fields(rates, field_names)
        for rate in rates:
            if rate.consumer_rate < 0 or rate.commercial_rate < 0:
                raise ValidationError(gettext(
                        'payt_dunning.msg_interest_rate_negative',
                        date=rate.start_date))

    @classmethod
    def table(cls):
        "The rate table as the engine reads it."
        return tuple(law.RateRow(r.start_date, r.consumer_rate,
                r.commercial_rate, r.confidence, r.note or '')
            for r in cls.search([], order=[('start_date', 'ASC')]))


class CaseConfiguration(ModelSQL, ModelView):
    "Collection Case Configuration"
    __name__ = 'payt.case.configuration'
    __string__ = "Collection Case Configuration"
    administration = fields.Many2One('payt.administration',
        "Administration", required=True, ondelete='CASCADE')
    auto_open = fields.Boolean("Open Cases Automatically",
        help="The daily run hands items on the flow's collection step "
        "over to a case.")
    channel = fields.Selection(LETTER_CHANNELS, "Letter Channel",
        required=True)
    post_delivery_days = fields.Integer("Post Delivery (working days)",
        required=True, help="A posted letter counts as received this many "
        "working days after sending (weekends and Dutch holidays skipped).")
    business_costs = fields.Selection([
            ('staffel', "Statutory staffel (BIK)"),
            ('agreed', "Agreed amount"),
            ], "Business Collection Costs", required=True)
    business_agreed_amount = fields.Numeric("Agreed Amount",
        digits=(16, 2),
        states={
            'invisible': Eval('business_costs') != 'agreed',
            'required': Eval('business_costs') == 'agreed',
            },
        help="Collection costs agreed with business debtors (art. 6:96 "
        "BW); never used for consumers.")
    vat_rate = fields.Numeric("VAT Surcharge (%)", digits=(6, 2),
        help="Besluit BIK art. 2 lid 3: only when all three conditions "
        "below hold.")
    vat_third_party = fields.Boolean("A VAT-charging third party collects")
    vat_no_deduction = fields.Boolean("The creditor cannot deduct the VAT")
    vat_stated = fields.Boolean("The letters state this explicitly")
    steps = fields.One2Many('payt.case.step', 'configuration', "Steps")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('administration_unique', Unique(t, t.administration),
                'payt_dunning.msg_case_configuration_unique'),
            ]

    @staticmethod
    def default_auto_open():
        return True

    @staticmethod
    def default_channel():
        return 'post'

    @staticmethod
    def default_post_delivery_days():
        return 2

    @staticmethod
    def default_business_costs():
        return 'staffel'

    @classmethod
    def validate_fields(cls, configurations, field_names):
        super().validate_fields(configurations, field_names)
        for config in configurations:
            if config.vat_rate and not config.vat_conditions():
                raise ValidationError(gettext(
                        'payt_dunning.msg_case_vat_conditions'))
            if config.post_delivery_days is not None and (
                    config.post_delivery_days < 0):
                raise ValidationError(gettext(
                        'payt_dunning.msg_case_post_days'))

    def vat_conditions(self):
        return bool(self.vat_third_party and self.vat_no_deduction
            and self.vat_stated)

    @classmethod
    def of(cls, administration):
        "The administration's configuration, or the defaults unsaved."
        found = cls.search([('administration', '=', administration.id)],
            limit=1)
        if found:
            return found[0]
        return cls(administration=administration, auto_open=True,
            channel='post', post_delivery_days=2, business_costs='staffel',
            business_agreed_amount=None, vat_rate=None,
            vat_third_party=False, vat_no_deduction=False, vat_stated=False,
            steps=[])

    def lead_days(self, state):
        for step in self.steps or []:
            if step.state == state:
                return step.lead_days
        return DEFAULT_LEAD[state]

    def channel_for(self, state):
        for step in self.steps or []:
            if step.state == state and step.channel:
                return step.channel
        return self.channel


class CaseStep(ModelSQL, ModelView):
    "Collection Case Step"
    __name__ = 'payt.case.step'
    __string__ = "Collection Case Step"
    configuration = fields.Many2One('payt.case.configuration',
        "Configuration", required=True, ondelete='CASCADE')
    state = fields.Selection(CASE_STEPS, "Step", required=True)
    lead_days = fields.Integer("Lead Time (days)",
        help="Days after the previous step; empty: by hand only.")
    channel = fields.Selection([(None, "Default")] + LETTER_CHANNELS,
        "Letter Channel")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('state_unique', Unique(t, t.configuration, t.state),
                'payt_dunning.msg_case_step_unique'),
            ]
        cls.__access__.add('configuration')

    @classmethod
    def validate_fields(cls, steps, field_names):
        super().validate_fields(steps, field_names)
        for step in steps:
            if step.lead_days is not None and step.lead_days < 0:
                raise ValidationError(gettext(
                        'payt_dunning.msg_case_step_lead_negative'))


# ----------------------------------------------------------------- case

class Case(CompanyConsistentMixin, Workflow, ModelSQL, ModelView):
    "Collection Case"
    __name__ = 'payt.case'
    __string__ = "Collection Case"
    company = fields.Many2One('company.company', "Company", required=True,
        **_ro)
    administration = fields.Many2One('payt.administration',
        "Administration", required=True, ondelete='CASCADE', **_ro)
    debtor = fields.Many2One('payt.debtor', "Debtor", required=True,
        ondelete='CASCADE', **_ro)
    debtor_kind = fields.Selection(DEBTOR_KINDS, "Debtor Kind",
        required=True, readonly=True,
        help="Frozen when the case opens: it decides the law applied.")
    date = fields.Date("Opened On", required=True, **_ro)
    state = fields.Selection(STATES, "State", required=True, **_ro)
    state_date = fields.Date("Step Reached On", required=True, **_ro)
    close_reason = fields.Selection(CLOSE_REASONS, "Closed As", **_ro)
    items = fields.One2Many('payt.item', 'case', "Items", readonly=True)
    principal = fields.Numeric("Principal", digits=(16, 2), required=True,
        help="Sum of the open amounts handed over (art. 6:96 lid 7 BW: "
        "claims reminded together are added up).", **_ro)
    costs_waived = fields.Boolean("Costs Waived", **_ro)
    waive_reason = fields.Text("Reason to Waive Costs",
        states={'readonly': Bool(Eval('costs_waived'))})
    waived_by = fields.Many2One('res.user', "Waived By", **_ro)
    waived_date = fields.Date("Waived On", **_ro)
    costs = fields.One2Many('payt.case.cost', 'case', "Collection Costs",
        readonly=True)
    interests = fields.One2Many('payt.case.interest', 'case',
        "Statutory Interest", readonly=True)
    letters = fields.One2Many('payt.case.letter', 'case', "Letters",
        readonly=True)
    payments = fields.One2Many('payt.case.payment', 'case', "Payments",
        readonly=True)
    follow_up = fields.Function(fields.Selection(FOLLOW_UP, "Follow-up"),
        'get_follow_up')
    costs_amount = fields.Function(
        fields.Numeric("Costs", digits=(16, 2)), 'get_balance')
    interest_amount = fields.Function(
        fields.Numeric("Interest", digits=(16, 2)), 'get_balance')
    remaining_costs = fields.Function(
        fields.Numeric("Costs Due", digits=(16, 2)), 'get_balance')
    remaining_interest = fields.Function(
        fields.Numeric("Interest Due", digits=(16, 2)), 'get_balance')
    remaining_principal = fields.Function(
        fields.Numeric("Principal Due", digits=(16, 2)), 'get_balance')
    remaining_total = fields.Function(
        fields.Numeric("Total Due", digits=(16, 2)), 'get_balance')
    dossier = fields.Binary("Dossier", filename='dossier_name', **_ro)
    dossier_name = fields.Char("Dossier Name", **_ro)
    dossier_date = fields.Date("Dossier Exported On", **_ro)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.update({
                Index(t, (t.administration, Index.Range()),
                    (t.state, Index.Equality(cardinality='low'))),
                Index(t, (t.debtor, Index.Range())),
                })
        cls._order = [('date', 'DESC'), ('id', 'DESC')]
        cls._transitions |= {
            ('new', 'reminder'),
            ('reminder', 'second_reminder'),
            ('second_reminder', 'notice_of_default'),
            ('notice_of_default', 'ready'),
            ('ready', 'handed_over'),
            }
        cls._transitions |= {(s, 'closed') for s, _ in STATES
            if s != 'closed'}
        open_ = ~Eval('state').in_(['closed'])
        cls._buttons.update({
                'escalate': {
                    'invisible': ~Eval('state').in_(
                        ['new'] + ORDER[:-1]),
                    'depends': ['state'],
                    },
                'add_costs': {
                    'invisible': ~open_ | Bool(Eval('costs_waived')),
                    'depends': ['state', 'costs_waived'],
                    },
                'waive_costs': {
                    'invisible': ~open_ | Bool(Eval('costs_waived')),
                    'depends': ['state', 'costs_waived'],
                    },
                'waive': {
                    'invisible': ~open_ | Bool(Eval('costs_waived')),
                    'depends': ['state', 'costs_waived'],
                    },
                'compute_interest': {
                    'invisible': ~open_,
                    'depends': ['state'],
                    },
                'export_dossier': {
                    'invisible': ~Eval('state').in_(
                        ['ready', 'handed_over']),
                    'depends': ['state'],
                    },
                'close_paid': {'invisible': ~open_, 'depends': ['state']},
                'write_off': {'invisible': ~open_, 'depends': ['state']},
                'withdraw': {'invisible': ~open_, 'depends': ['state']},
                'pause': {
                    'invisible': ~open_ | (Eval('follow_up') != 'active'),
                    'depends': ['state', 'follow_up'],
                    },
                'stop': {
                    'invisible': ~open_ | (Eval('follow_up') == 'stopped'),
                    'depends': ['state', 'follow_up'],
                    },
                'resume': {
                    'invisible': ~open_ | (Eval('follow_up') == 'active'),
                    'depends': ['state', 'follow_up'],
                    },
                })

    @staticmethod
    def default_state():
        return 'new'

    @staticmethod
    def default_costs_waived():
        return False

    def get_rec_name(self, name):
        return '%s #%s' % (self.debtor.rec_name, self.id)

    @classmethod
    def search_rec_name(cls, name, clause):
        return [('debtor.name',) + tuple(clause[1:])]

    @property
    def currency(self):
        return self.administration.company.currency

    def round(self, amount):
        return self.currency.round(amount)

    @property
    def interest_kind(self):
        # 6:119 for consumers, 6:119a for commercial transactions.
        return 'consumer' if self.debtor_kind == 'consumer' else 'commercial'

    # --------------------------------------------------------- balances

    def balances(self):
        "What was charged, paid and remains of costs, interest, principal."
        costs = sum((c.total for c in self.costs if c.state == 'charged'),
            ZERO)
        interest = sum((i.amount for i in self.interests), ZERO)
        paid = {k: sum((getattr(p, 'to_' + k) for p in self.payments), ZERO)
            for k in ['costs', 'interest', 'principal']}
        remaining = {
            'costs': max(costs - paid['costs'], ZERO),
            'interest': max(interest - paid['interest'], ZERO),
            'principal': max(self.principal - paid['principal'], ZERO),
            }
        return {'costs': costs, 'interest': interest, 'paid': paid,
            'remaining': remaining,
            'total': sum(remaining.values(), ZERO)}

    @classmethod
    def get_balance(cls, cases, names):
        result = {n: {} for n in names}
        for case in cases:
            b = case.balances()
            values = {
                'costs_amount': b['costs'],
                'interest_amount': b['interest'],
                'remaining_costs': b['remaining']['costs'],
                'remaining_interest': b['remaining']['interest'],
                'remaining_principal': b['remaining']['principal'],
                'remaining_total': b['total'],
                }
            for name in names:
                result[name][case.id] = values[name]
        return result

    def item_principals(self):
        """Principal still due per item: principal payments go to the
        oldest claim first (art. 6:43 lid 2 BW)."""
        paid = sum((p.to_principal for p in self.payments), ZERO)
        result = {}
        for item in sorted(self.items, key=lambda i: (i.due_date, i.id)):
            part = min(paid, item.case_principal or ZERO)
            result[item] = (item.case_principal or ZERO) - part
            paid -= part
        return result

    @classmethod
    def get_follow_up(cls, cases, name):
        "The most restrictive follow-up of the case's items."
        Item = Pool().get('payt.item')
        rank = {'active': 0, 'paused': 1, 'stopped': 2}
        items = [i for c in cases for i in c.items]
        states = Item.get_follow_up(items, name) if items else {}
        return {c.id: max([states[i.id] for i in c.items] or ['active'],
                key=rank.get) for c in cases}

    # ---------------------------------------------------------- opening

    @classmethod
    def open_for_items(cls, items, date=None):
        """Hand items over to a case by hand: one case per debtor; the
        items move to the flow's collection step so the flow stops
        dunning them."""
        pool = Pool()
        Event = pool.get('payt.event')
        Item = pool.get('payt.item')
        date = date or _today()
        # Only claims in default: costs and interest need an expired term.
        items = [i for i in items if i.state == 'open' and i.open_amount > 0
            and i.due_date < date]
        for item in items:
            if item.case:
                raise UserError(gettext('payt_dunning.msg_case_item_in_case',
                        item=item.rec_name, case=item.case.rec_name))
        if not items:
            raise UserError(gettext('payt_dunning.msg_case_open_no_items'))
        by_debtor = {}
        for item in items:
            by_debtor.setdefault(item.debtor, []).append(item)
        cases, events = [], []
        for debtor, debtor_items in by_debtor.items():
            step = cls._collection_step(debtor.administration)
            case = cls._new_case(debtor, date)
            for item in debtor_items:
                item.case = case
                item.case_principal = item.open_amount
                if step:
                    item.step, item.step_date = step, date
                events.append(Event(company=item.company, item=item,
                        date=date, kind='step', step=step,
                        text_key='msg_event_case_handed_over',
                        text_params=event_params(case=case.id)))
            Item.save(debtor_items)
            case = cls(case.id)
            case.principal = sum(
                (i.case_principal or ZERO for i in case.items), ZERO)
            case.save()
            cases.append(case)
        Event.save(events)
        return cases

    @staticmethod
    def _collection_step(administration):
        steps = [s for s in administration.flow.steps
            if s.action == 'collection'] if administration.flow else []
        return max(steps, key=lambda s: s.lead_days) if steps else None

    @classmethod
    def _new_case(cls, debtor, date):
        "The debtor's case still taking in items, else a new one."
        case = cls.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*case.select(case.id,
                where=(case.debtor == debtor.id) & cls._joinable(case),
                order_by=[case.id.desc], limit=1))
        found = cursor.fetchone()
        if found:
            return cls(found[0])
        case, = cls.create([cls._case_values(debtor, date)])
        return case

    @staticmethod
    def _joinable(case):
        """SQL condition on the case table: the case still takes in the
        debtor's items that reach collection, because its first letter
        (for a consumer: the 14-day letter, art. 6:96 lid 6 BW) has not
        gone out and no costs were charged.  Later items open a new case
        with a letter of its own (docs/LAW.md, one debtor, several
        cases)."""
        pool = Pool()
        letter = pool.get('payt.case.letter').__table__()
        cost = pool.get('payt.case.cost').__table__()
        return ((case.state == 'new')
            & ~case.id.in_(letter.select(letter.case))
            & ~case.id.in_(cost.select(cost.case,
                    where=cost.state == 'charged')))

    @staticmethod
    def _case_values(debtor, date):
        return {
            'company': debtor.company.id,
            'administration': debtor.administration.id,
            'debtor': debtor.id, 'debtor_kind': debtor.kind,
            'date': date, 'state_date': date, 'principal': ZERO,
            }

    @classmethod
    def open_due(cls, administration, date):
        """Set-based: every followed item on a collection step without a
        case joins its debtor's case that still takes in items (see
        _joinable), else a new one; returns the number of items."""
        from .run import DailyRun
        Debtor = Pool().get('payt.debtor')
        steps = [s.id for s in (administration.flow.steps
                if administration.flow else []) if s.action == 'collection']
        if not steps:
            return 0
        cursor = Transaction().connection.cursor()
        daily = DailyRun(administration, date)
        item, case = daily.item, cls.__table__()
        where = daily._followed() & item.step.in_(steps) & (
            item.case == Null)
        cursor.execute(*item.select(item.debtor, where=where,
                group_by=[item.debtor]))
        debtors = Debtor.browse([d for d, in cursor])
        if not debtors:
            return 0
        joinable = (case.administration == administration.id
            ) & cls._joinable(case)
        cursor.execute(*case.select(case.debtor, where=joinable))
        existing = {d for d, in cursor}
        cls.create([cls._case_values(d, date) for d in debtors
                if d.id not in existing])
        # No event of its own: reaching the collection step is already on
        # the timeline, and the case's letters add 'sent' events.
        new_case = case.select(Max(case.id),
            where=(case.debtor == item.debtor) & joinable)
        cursor.execute(*item.update([item.case, item.case_principal],
                [new_case, item.open_amount], where=where))
        count = cursor.rowcount
        invalidate_caches()
        cases = cls.search([('administration', '=', administration.id),
                ('state', '=', 'new')])
        for case_ in cases:
            case_.principal = sum(
                (i.case_principal or ZERO for i in case_.items), ZERO)
        cls.save(cases)
        return count

    # ------------------------------------------------------- escalation

    @classmethod
    def escalate_all(cls, administration, date):
        """The run's part: open cases, take in payments, charge costs and
        move cases a step, each phase for all cases at once; letters are
        exactly once (unique per case and step)."""
        Config = Pool().get('payt.case.configuration')
        config = Config.of(administration)
        summary = {'opened_items': 0, 'moved': {}, 'letters': 0,
            'costs': 0, 'closed_paid': 0, 'held': 0}
        held = cls._held_cases(administration, date)
        if held is None:
            summary['state'] = 'held'
            return summary
        if config.auto_open:
            summary['opened_items'] = cls.open_due(administration, date)
        with Transaction().set_context(payt_case_date=date):
            cases = cls.search([('administration', '=', administration.id),
                    ('state', 'not in', ['closed', 'handed_over'])],
                order=[('id', 'ASC')])
            cls._sync_payments(cases, date)
            cases = cls.browse([c.id for c in cases])
            paid = [c for c in cases
                if c.items and c.balances()['total'] == 0]
            if paid:
                cls.close(paid, 'paid')
            summary['closed_paid'] = len(paid)
            summary['held'] = len([c for c in cases if c.id in held])
            ids = [c.id for c in cases if c not in paid and c.id not in held]
            for _ in range(len(ORDER) + 1):
                cases = cls.browse(ids)
                chargeable = [c for c in cases if not c.costs
                    and c.costs_problem(date) is None]
                if chargeable:
                    cls._charge(chargeable, date)
                    summary['costs'] += len(chargeable)
                    cases = cls.browse(ids)
                due = {}
                for case in cases:
                    target = case._due(config, date)
                    if target:
                        due.setdefault(target, []).append(case)
                if not due:
                    break
                for target, moving in due.items():
                    letters = cls._move(moving, target)
                    summary['letters'] += len(letters or [])
                    summary['moved'][target] = (
                        summary['moved'].get(target, 0) + len(moving))
        return summary

    @classmethod
    def _held_cases(cls, administration, date):
        """Ids of cases with an item held by a pause or stop of the item
        or its debtor (set-based, as the flow's run); None when the whole
        administration is held."""
        from .run import DailyRun
        daily = DailyRun(administration, date)
        if daily._administration_hold():
            return None
        item, pause = daily.item, daily.pause
        active = daily._active_pause()
        held_items = pause.select(pause.item,
            where=active & (pause.item != Null))
        held_debtors = pause.select(pause.debtor,
            where=active & (pause.debtor != Null) & (pause.item == Null))
        daily.cursor.execute(*item.select(item.case,
                where=(item.administration == administration.id)
                & (item.case != Null)
                & (item.id.in_(held_items) | item.debtor.in_(held_debtors)),
                group_by=[item.case]))
        return {c for c, in daily.cursor}

    def _next_state(self):
        if self.state == 'new':
            return 'reminder'
        if self.state in ORDER[:-1]:
            return ORDER[ORDER.index(self.state) + 1]
        return None

    def _due(self, config, date):
        "The next step if it is due on `date`, else None."
        target = self._next_state()
        if not target:
            return None
        lead = config.lead_days(target)
        if lead is None or self.state_date + datetime.timedelta(
                days=lead) > date:
            return None
        if (self.debtor_kind == 'consumer' and self.state == 'reminder'
                and not self.costs_waived):
            # Escalating earlier would claim costs the 14-day letter said
            # are only due after its term (art. 6:96 lid 6 BW).
            letter = self.fourteen_day_letter()
            if letter and date < letter.costs_chargeable_from:
                return None
        return target

    @classmethod
    def _move(cls, cases, target):
        method = {
            'reminder': 'remind', 'second_reminder': 'second_remind',
            'notice_of_default': 'notice_default', 'ready': 'make_ready',
            'handed_over': 'hand_over',
            }[target]
        return getattr(cls, method)(cases)

    @classmethod
    def _sync_payments(cls, cases, date):
        "Payments imported on the cases' items become case payments."
        pool = Pool()
        Payment = pool.get('payt.payment')
        CasePayment = pool.get('payt.case.payment')
        by_item = {i.id: c for c in cases for i in c.items}
        if not by_item:
            return
        linked = {p.payment.id for p in CasePayment.search([
                    ('case', 'in', [c.id for c in cases]),
                    ('payment', '!=', None)])}
        vlist = []
        for payment in Payment.search([
                    ('item', 'in', list(by_item)),
                    ('date', '<=', date),
                    ], order=[('date', 'ASC'), ('id', 'ASC')]):
            case = by_item[payment.item.id]
            if (payment.id in linked or payment.amount <= 0
                    or payment.date < case.date):
                continue
            vlist.append({'case': case.id, 'date': payment.date,
                    'amount': payment.amount, 'payment': payment.id})
        if vlist:
            CasePayment.create(vlist)

    @classmethod
    def _enter(cls, cases, state):
        date = _case_date()
        for case in cases:
            case.state_date = date
        cls.save(cases)
        if state in LETTER_STEPS:
            Letter = Pool().get('payt.case.letter')
            return Letter.produce(cls.browse([c.id for c in cases]), state,
                date)
        return []

    @classmethod
    @Workflow.transition('reminder')
    def remind(cls, cases):
        return cls._enter(cases, 'reminder')

    @classmethod
    @Workflow.transition('second_reminder')
    def second_remind(cls, cases):
        return cls._enter(cases, 'second_reminder')

    @classmethod
    @Workflow.transition('notice_of_default')
    def notice_default(cls, cases):
        return cls._enter(cases, 'notice_of_default')

    @classmethod
    @Workflow.transition('ready')
    def make_ready(cls, cases):
        return cls._enter(cases, 'ready')

    @classmethod
    @Workflow.transition('handed_over')
    def hand_over(cls, cases):
        return cls._enter(cases, 'handed_over')

    @classmethod
    @ModelView.button
    def escalate(cls, cases):
        "Move to the next step now, by hand; lead times do not apply."
        for case in cases:
            target = case._next_state()
            if target:
                cls._move([case], target)

    @classmethod
    @Workflow.transition('closed')
    def close(cls, cases, reason):
        date = _case_date()
        for case in cases:
            case.close_reason = reason
            case.state_date = date
        cls.save(cases)

    @classmethod
    @ModelView.button
    def close_paid(cls, cases):
        cls.close(cases, 'paid')

    @classmethod
    @ModelView.button
    def write_off(cls, cases):
        cls.close(cases, 'written_off')

    @classmethod
    @ModelView.button
    def withdraw(cls, cases):
        cls.close(cases, 'withdrawn')

    # ------------------------------------------------------------ costs

    def fourteen_day_letter(self):
        letters = [l for l in self.letters if l.fourteen_day]
        return min(letters, key=lambda l: l.date) if letters else None

    def costs_problem(self, date):
        """Why costs cannot be charged on `date`, or None.  Returned as
        (message id, arguments) so the run can skip and a button can say
        why."""
        if self.state == 'closed':
            return ('payt_dunning.msg_case_closed', {})
        if self.costs_waived:
            return ('payt_dunning.msg_case_costs_waived',
                {'reason': self.waive_reason or ''})
        balances = self.balances()
        if balances['remaining']['principal'] <= 0:
            return ('payt_dunning.msg_case_costs_paid', {})
        if self.debtor_kind != 'consumer':
            # Business: due without a reminder once the term expired
            # (art. 6:96 lid 4 BW); the items are past the flow already.
            return None
        letter = self.fourteen_day_letter()
        if not letter:
            return ('payt_dunning.msg_case_costs_no_letter', {})
        if letter.wording not in (law.TERM_WORDING_NL, law.TERM_WORDING_EN):
            return ('payt_dunning.msg_case_costs_letter_invalid',
                {'letter': letter.rec_name})
        if letter.principal < self.principal:
            return ('payt_dunning.msg_case_costs_letter_principal',
                {'stated': letter.principal, 'principal': self.principal})
        if date < letter.costs_chargeable_from:
            return ('payt_dunning.msg_case_costs_term_running',
                {'date': letter.costs_chargeable_from,
                    'receipt': letter.receipt_date,
                    'term_end': letter.term_end})
        return None

    def compute_costs(self, principal=None):
        "law.collection_costs for this case under its configuration."
        Config = Pool().get('payt.case.configuration')
        config = Config.of(self.administration)
        principal = (self.balances()['remaining']['principal']
            if principal is None else principal)
        kwargs = {}
        if (self.debtor_kind == 'business'
                and config.business_costs == 'agreed'):
            kwargs['agreed_amount'] = config.business_agreed_amount
        elif config.vat_rate:
            kwargs['vat_rate'] = config.vat_rate
            kwargs['vat_conditions'] = (bool(config.vat_third_party),
                bool(config.vat_no_deduction), bool(config.vat_stated))
        default = min((i.due_date for i in self.items),
            default=None)
        if default:
            kwargs['default_date'] = max(
                default + datetime.timedelta(days=1), law.BIK_START)
        return law.collection_costs(principal, self.debtor_kind, **kwargs)

    @classmethod
    def _charge(cls, cases, date):
        Cost = Pool().get('payt.case.cost')
        vlist = []
        for case in cases:
            letter = (case.fourteen_day_letter()
                if case.debtor_kind == 'consumer' else None)
            principal = case.balances()['remaining']['principal']
            if letter:
                # Never more than the letter stated (lid 6): a debtor who
                # paid part within the term owes costs over what is left.
                principal = min(principal, letter.principal)
            result = case.compute_costs(principal)
            if letter and result.total > letter.costs_stated:
                raise UserError(gettext(
                        'payt_dunning.msg_case_costs_exceed_letter',
                        costs=result.total, stated=letter.costs_stated))
            vlist.append(Cost.values_from(case, result, date, letter))
        return Cost.create(vlist)

    @classmethod
    @ModelView.button
    def add_costs(cls, cases):
        "Charge the costs, or say why the law does not allow it yet."
        date = _case_date()
        for case in cases:
            if any(c.state == 'charged' for c in case.costs):
                continue
            problem = case.costs_problem(date)
            if problem:
                message, args = problem
                raise UserError(gettext(message, case=case.rec_name, **args))
            cls._charge([case], date)

    @classmethod
    @ModelView.button
    def waive_costs(cls, cases):
        "Waive the costs of the case; who and why are recorded."
        Cost = Pool().get('payt.case.cost')
        for case in cases:
            if not (case.waive_reason or '').strip():
                raise UserError(gettext(
                        'payt_dunning.msg_case_waive_reason',
                        case=case.rec_name))
        cls.write(cases, {'costs_waived': True,
                'waived_by': Transaction().user, 'waived_date': _today()})
        Cost.write([c for case in cases for c in case.costs], {
                'state': 'waived'})

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_case_waive')
    def waive(cls, cases):
        "Waive the costs, asking the reason first."
        pass

    # --------------------------------------------------------- interest

    @classmethod
    @ModelView.button
    def compute_interest(cls, cases, date=None):
        """Bring each item's interest line up to `date` (exclusive): one
        line per item, computed from its first day of default with the
        payments on it, so the year of capitalisation keeps running from
        the default (art. 6:119 lid 2 BW) and paid interest is never
        capitalised."""
        pool = Pool()
        Interest = pool.get('payt.case.interest')
        Rate = pool.get('payt.interest.rate')
        date = date or _case_date()
        rates = Rate.table()
        to_save, to_delete = [], []
        for case in cases:
            if case.state == 'closed':
                continue
            for item, payments in case.item_payments(date, rates).items():
                lines = [l for l in case.interests if l.item == item]
                # Lines of the former segmented model give way to one.
                to_delete.extend(lines[1:])
                line = lines[0] if lines else Interest(case=case, item=item,
                    start=item.due_date + datetime.timedelta(days=1))
                line.principal = item.case_principal or ZERO
                if date <= line.start or not line.principal:
                    continue
                line.set_result(case.item_interest(line.principal,
                        line.start, date, payments, rates))
                to_save.append(line)
        Interest.delete(to_delete)
        Interest.save(to_save)

    def item_interest(self, principal, start, end, payments, rates):
        "law.statutory_interest for one item of this case."
        return law.statutory_interest(principal, start, end,
            self.interest_kind, rates=rates, payments=payments,
            # A case runs to today even before the administrator enters
            # the new half year's rate: its lines carry the warning.
            provisional=True)

    def item_payments(self, date, rates):
        """The interest and principal parts of the case's payments up to
        `date`, per item as (date, amount): interest to the oldest item
        first, up to what it owed that day; principal to the oldest first
        (art. 6:43 lid 2 BW).  Costs stay with the case."""
        items = sorted(self.items, key=lambda i: (i.due_date, i.id))
        split = {item: [] for item in items}
        principal_left = {i: i.case_principal or ZERO for i in items}
        for payment in sorted(self.payments, key=lambda p: (p.date, p.id)):
            if payment.date > date:
                continue
            interest = payment.to_interest or ZERO
            principal = payment.to_principal or ZERO
            for item in items:
                start = item.due_date + datetime.timedelta(days=1)
                to_interest = ZERO
                if interest > 0 and payment.date > start:
                    owed = self.item_interest(
                        item.case_principal or ZERO, start, payment.date,
                        split[item], rates).interest_due
                    to_interest = min(interest, owed)
                    interest -= to_interest
                to_principal = min(principal, principal_left[item])
                principal -= to_principal
                principal_left[item] -= to_principal
                if to_interest or to_principal:
                    split[item].append(
                        (payment.date, to_interest + to_principal))
        return split

    # ----------------------------------------------------- pause, stop

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_case_pause')
    def pause(cls, cases):
        pass

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_case_stop')
    def stop(cls, cases):
        pass

    @classmethod
    @ModelView.button
    def resume(cls, cases):
        "Lift the pauses of the case's items (not the debtor's)."
        Pause = Pool().get('payt.pause')
        pauses = []
        for case in cases:
            for item in case.items:
                pauses.extend(item._own_pauses())
        Pause.lift(pauses)

    # ----------------------------------------------------------- dossier

    @classmethod
    @ModelView.button
    def export_dossier(cls, cases):
        "The bailiff's dossier: one ZIP per case."
        from .dossier import build_dossier
        date = _today()
        for case in cases:
            if case.state not in ('ready', 'handed_over'):
                raise UserError(gettext('payt_dunning.msg_case_dossier_state',
                        case=case.rec_name))
        cls.compute_interest(cases, date)
        for case in cases:
            case = cls(case.id)
            case.dossier = build_dossier(case, date)
            case.dossier_name = 'dossier-%s-%s.zip' % (case.id,
                date.isoformat())
            case.dossier_date = date
            case.save()


class OpenItem(metaclass=PoolMeta):
    __name__ = 'payt.item'
    case = fields.Many2One('payt.case', "Collection Case", readonly=True,
        ondelete='SET NULL',
        domain=[('debtor', '=', Eval('debtor', -1))])
    case_principal = fields.Numeric("Principal Handed Over",
        digits=(16, 2), readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.case, Index.Range())))


# ------------------------------------------------------------ figures

class CaseCost(CompanyConsistentMixin, ModelSQL, ModelView):
    "Collection Case Costs"
    _company_path = 'case.company'
    __name__ = 'payt.case.cost'
    __string__ = "Collection Case Costs"
    case = fields.Many2One('payt.case', "Case", required=True,
        ondelete='CASCADE', **_ro)
    date = fields.Date("Charged On", required=True, **_ro)
    state = fields.Selection([
            ('charged', "Charged"),
            ('waived', "Waived"),
            ], "State", required=True, **_ro)
    principal = fields.Numeric("Principal", digits=(16, 2), required=True,
        **_ro)
    debtor_kind = fields.Selection(DEBTOR_KINDS, "Debtor Kind",
        required=True, **_ro)
    agreed_amount = fields.Numeric("Agreed Amount", digits=(16, 2), **_ro)
    vat_rate = fields.Numeric("VAT Rate (%)", digits=(6, 2), **_ro)
    costs = fields.Numeric("Costs", digits=(16, 2), required=True, **_ro)
    vat_amount = fields.Numeric("VAT", digits=(16, 2), required=True, **_ro)
    total = fields.Numeric("Total", digits=(16, 2), required=True, **_ro)
    letter = fields.Many2One('payt.case.letter', "14-day Letter",
        ondelete='RESTRICT', **_ro)
    rule = fields.Text("Rule", required=True, **_ro)
    inputs = fields.Text("Computation (JSON)", required=True, **_ro,
        help="The engine's full result: brackets, minimum/maximum, VAT "
        "conditions; law.collection_costs recomputes it.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('case')
        cls._order = [('date', 'ASC'), ('id', 'ASC')]

    @staticmethod
    def default_state():
        return 'charged'

    @classmethod
    def values_from(cls, case, result, date, letter=None):
        return {'case': case.id, 'date': date,
            'principal': result.principal, 'debtor_kind': result.debtor_kind,
            'agreed_amount': result.agreed_amount,
            'vat_rate': result.vat_rate, 'costs': case.round(result.costs),
            'vat_amount': case.round(result.vat_amount),
            'total': case.round(result.total),
            'letter': letter.id if letter else None, 'rule': result.rule,
            'inputs': _json(result.to_dict())}

    def recompute(self):
        "The same figure from the stored inputs alone."
        data = json.loads(self.inputs)
        conditions = data['vat_conditions']
        return law.collection_costs(data['principal'], data['debtor_kind'],
            vat_rate=data['vat_rate'], agreed_amount=data['agreed_amount'],
            default_date=data['default_date'],
            vat_conditions=tuple(conditions.values()) if conditions
            else None)


class CaseInterest(CompanyConsistentMixin, ModelSQL, ModelView):
    "Collection Case Interest"
    _company_path = 'case.company'
    __name__ = 'payt.case.interest'
    __string__ = "Collection Case Interest"
    case = fields.Many2One('payt.case', "Case", required=True,
        ondelete='CASCADE', **_ro)
    item = fields.Many2One('payt.item', "Item", required=True,
        ondelete='CASCADE', **_ro)
    kind = fields.Selection([
            ('consumer', "Consumer (6:119 BW)"),
            ('commercial', "Commercial (6:119a BW)"),
            ], "Kind", required=True, **_ro)
    principal = fields.Numeric("Principal", digits=(16, 2), required=True,
        **_ro)
    start = fields.Date("From", required=True, **_ro,
        help="First day of default: the day after the due date.")
    end = fields.Date("Up To (exclusive)", required=True, **_ro)
    amount = fields.Numeric("Interest", digits=(16, 2), required=True, **_ro)
    closed = fields.Boolean("Closed", **_ro,
        help="The item's principal is paid: no more interest accrues.")
    rule = fields.Text("Rule", required=True, **_ro)
    rates = fields.Text("Rates Used (JSON)", required=True, **_ro)
    warnings = fields.Text("Warnings", **_ro)
    inputs = fields.Text("Computation (JSON)", required=True, **_ro)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('case')
        cls._order = [('start', 'ASC'), ('id', 'ASC')]

    @staticmethod
    def default_closed():
        return False

    def set_result(self, result):
        self.kind = result.kind
        self.closed = result.principal_due == 0
        self.end = result.end
        self.amount = self.case.round(result.interest)
        self.rule = result.rule
        used = sorted({(p.rate_start, p.rate, p.confidence)
                for p in result.periods})
        self.warnings = '\n'.join(unconfirmed_rate_warnings(used)) or None
        self.rates = _json([{'from': d, 'rate': r, 'confidence': c}
                for d, r, c in used])
        self.inputs = _json(result.to_dict())

    def recompute(self):
        "The same figure from the stored inputs alone."
        data = json.loads(self.inputs)
        rates = [(p['rate_start'], p['rate'], p['rate'])
            for p in data['periods']]
        rates = list({r[0]: r for r in rates}.values())
        return law.statutory_interest(data['principal'], data['start'],
            data['end'], data['kind'], rates=rates,
            payments=[(p['date'], p['amount'])
                for p in data.get('payments', [])],
            provisional=True)


class CasePayment(CompanyConsistentMixin, ModelSQL, ModelView):
    "Collection Case Payment"
    _company_path = 'case.company'
    __name__ = 'payt.case.payment'
    __string__ = "Collection Case Payment"
    case = fields.Many2One('payt.case', "Case", required=True,
        ondelete='CASCADE', states={'readonly': Eval('id', -1) >= 0})
    date = fields.Date("Date", required=True,
        states={'readonly': Eval('id', -1) >= 0})
    amount = fields.Numeric("Amount", digits=(16, 2), required=True,
        states={'readonly': Eval('id', -1) >= 0})
    payment = fields.Many2One('payt.payment', "Imported Payment",
        ondelete='RESTRICT', **_ro)
    to_costs = fields.Numeric("To Costs", digits=(16, 2), **_ro)
    to_interest = fields.Numeric("To Interest", digits=(16, 2), **_ro)
    to_principal = fields.Numeric("To Principal", digits=(16, 2), **_ro)
    overpayment = fields.Numeric("Overpayment", digits=(16, 2), **_ro)
    remaining_costs = fields.Numeric("Costs Left", digits=(16, 2), **_ro)
    remaining_interest = fields.Numeric("Interest Left", digits=(16, 2),
        **_ro)
    remaining_principal = fields.Numeric("Principal Left", digits=(16, 2),
        **_ro)
    rule = fields.Text("Rule", **_ro)
    inputs = fields.Text("Allocation (JSON)", **_ro)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('payment_unique', Unique(t, t.payment),
                'payt_dunning.msg_case_payment_unique'),
            ]
        cls.__access__.add('case')
        cls._order = [('date', 'ASC'), ('id', 'ASC')]

    @classmethod
    def create(cls, vlist):
        """Allocate each payment when it is registered (art. 6:44 BW):
        interest is brought up to the payment day first; the paid interest
        is then kept out of the next capitalisation."""
        Case = Pool().get('payt.case')
        records = []
        for values in vlist:
            values = values.copy()
            case = Case(values['case'])
            amount = Decimal(values['amount'])
            if amount <= 0:
                raise ValidationError(gettext(
                        'payt_dunning.msg_case_payment_positive'))
            Case.compute_interest([case], values['date'])
            case = Case(case.id)
            remaining = case.balances()['remaining']
            result = law.allocate_payment(amount, remaining['costs'],
                remaining['interest'], remaining['principal'])
            for name in ['to_costs', 'to_interest', 'to_principal',
                    'overpayment', 'remaining_costs', 'remaining_interest',
                    'remaining_principal']:
                values[name] = getattr(result, name)
            values['rule'] = result.rule
            values['inputs'] = _json(result.to_dict())
            records.extend(super().create([values]))
            # Each item's line now counts the payment from its day on.
            Case.compute_interest([Case(case.id)], values['date'])
        return records


# -------------------------------------------------------------- letters

class CaseLetter(CompanyConsistentMixin, ModelSQL, ModelView):
    "Collection Case Letter"
    _company_path = 'case.company'
    __name__ = 'payt.case.letter'
    __string__ = "Collection Case Letter"
    case = fields.Many2One('payt.case', "Case", required=True,
        ondelete='CASCADE', **_ro)
    step = fields.Selection(CASE_STEPS, "Step", required=True, **_ro)
    date = fields.Date("Sent On", required=True, **_ro)
    channel = fields.Selection(LETTER_CHANNELS, "Channel", required=True,
        **_ro)
    language = fields.Char("Language", required=True, **_ro)
    receipt_date = fields.Date("Received On", required=True, **_ro,
        help="Email: the day it is sent; post: the configured number of "
        "working days later.")
    fourteen_day = fields.Boolean("14-day Letter", **_ro,
        help="The consumer letter of art. 6:96 lid 6 BW.")
    term_end = fields.Date("Term Ends", **_ro)
    costs_chargeable_from = fields.Date("Costs Chargeable From", **_ro)
    wording = fields.Text("Term Wording", **_ro)
    principal = fields.Numeric("Principal", digits=(16, 2), required=True,
        **_ro)
    costs_stated = fields.Numeric("Costs Stated", digits=(16, 2), **_ro)
    costs_maximum = fields.Numeric("Statutory Maximum", digits=(16, 2),
        **_ro)
    interest_stated = fields.Numeric("Interest Stated", digits=(16, 2),
        **_ro)
    total_stated = fields.Numeric("Total Stated", digits=(16, 2), **_ro)
    items_text = fields.Text("Invoices", **_ro)
    inputs = fields.Text("Computation (JSON)", **_ro)
    pdf = fields.Binary("PDF", filename='pdf_name', **_ro)
    pdf_name = fields.Char("File Name", **_ro)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # One letter per case and step, whatever reruns or overlaps do.
        cls._sql_constraints += [
            ('case_step_unique', Unique(t, t.case, t.step),
                'payt_dunning.msg_case_letter_unique'),
            ]
        cls.__access__.add('case')
        cls._order = [('date', 'ASC'), ('id', 'ASC')]

    def get_rec_name(self, name):
        return '%s %s %s' % (self.case.rec_name, self.step, self.date)

    @classmethod
    def produce(cls, cases, step, date):
        """The step's letter for each case, exactly once (a case that has
        it already is left alone), rendered and put on the timeline."""
        from .letter import case_letter_content, render_letter
        pool = Pool()
        Config = pool.get('payt.case.configuration')
        Case = pool.get('payt.case')
        if not cases:
            return []
        done = {l.case.id for l in cls.search([
                    ('case', 'in', [c.id for c in cases]),
                    ('step', '=', step)])}
        cases = [c for c in cases if c.id not in done]
        Case.compute_interest(cases, date)
        cases = Case.browse([c.id for c in cases])
        config = Config.of(cases[0].administration) if cases else None
        letters = cls.create([cls._letter_values(case, config, step, date)
                for case in cases])
        for letter in letters:
            letter.pdf = render_letter(case_letter_content(letter))
            letter.pdf_name = 'letter-%s-%s-%s.pdf' % (letter.case.id, step,
                date.isoformat())
        cls.save(letters)
        cls._on_timeline(letters)
        return letters

    @classmethod
    def _letter_values(cls, case, config, step, date):
        "What the letter states, with the computation behind it."
        channel = config.channel_for(step)
        term = law.fourteen_day_term(date, channel,
            post_delivery_days=config.post_delivery_days)
        fourteen = (step == 'reminder' and case.debtor_kind == 'consumer')
        balances = case.balances()
        principal = balances['remaining']['principal']
        stated = maximum = None
        inputs = {'term': term.to_dict(), 'balances': balances}
        if not case.costs_waived and principal > 0:
            charged = [c for c in case.costs if c.state == 'charged']
            if charged:
                stated = maximum = charged[0].total
            else:
                result = case.compute_costs(principal)
                stated = maximum = case.round(result.total)
                inputs['costs'] = result.to_dict()
        elif case.costs_waived:
            # Less than the maximum is charged: the letter says both.
            stated = ZERO
            maximum = case.round(case.compute_costs(principal).total
                ) if principal > 0 else ZERO
        language = case.debtor.language
        return {
            'case': case.id, 'step': step, 'date': date, 'channel': channel,
            'language': language,
            'receipt_date': term.receipt_date, 'fourteen_day': fourteen,
            'term_end': term.term_end,
            'costs_chargeable_from': (term.costs_chargeable_from
                if fourteen else None),
            'wording': (term.wording_nl if language == 'nl'
                else term.wording_en),
            'principal': principal, 'costs_stated': stated,
            'costs_maximum': maximum,
            'interest_stated': balances['remaining']['interest'],
            # What is due now; costs not yet charged are a consequence
            # the letter states separately.
            'total_stated': balances['total'],
            'items_text': '\n'.join(
                '%s %s %s' % (i.number or i.external_id, i.due_date,
                    i.case_principal) for i in case.items),
            'inputs': _json(inputs),
            }

    @classmethod
    def _on_timeline(cls, letters):
        "One 'sent' event per item with the letter's PDF attached to it."
        pool = Pool()
        Event = pool.get('payt.event')
        Attachment = pool.get('ir.attachment')
        pairs = [(letter, item) for letter in letters
            for item in letter.case.items]
        events = Event.create([{
                    'company': letter.case.company.id, 'item': item.id,
                    'date': letter.date, 'kind': 'sent',
                    'text_key': 'msg_event_case_letter',
                    'text_params': event_params(case_step=letter.step,
                        letter_channel=letter.channel,
                        receipt_date=letter.receipt_date),
                    } for letter, item in pairs])
        Attachment.create([{
                    'resource': str(event), 'name': letter.pdf_name,
                    'type': 'data', 'data': letter.pdf,
                    } for (letter, _), event in zip(pairs, events)])


# --------------------------------------------------------------- wizards

class CasePauseWizard(PauseWizard):
    "Pause Collection Case"
    __name__ = 'payt.case.pause.wizard'
    __string__ = "Pause Collection Case"

    def _records_to_hold(self):
        "A case is held through its items, like any other item."
        return [i for case in self.records for i in case.items]


class CaseStopWizard(CasePauseWizard):
    "Stop Collection Case"
    __name__ = 'payt.case.stop.wizard'
    __string__ = "Stop Collection Case"
    _kind = 'stop'


class CaseOpen(Wizard):
    "Open Collection Case"
    __name__ = 'payt.case.open'
    __string__ = "Open Collection Case"
    start = StateAction('payt_dunning.act_case')

    def do_start(self, action):
        pool = Pool()
        Item = pool.get('payt.item')
        today = _today()
        if self.model.__name__ == 'payt.debtor':
            items = Item.search([
                    ('debtor', 'in', [d.id for d in self.records]),
                    ('state', '=', 'open'), ('case', '=', None),
                    ('due_date', '<', today)])
        else:
            items = list(self.records)
        cases = pool.get('payt.case').open_for_items(items, today)
        action['domains'] = []
        return action, {'res_id': [c.id for c in cases]}


class CaseWaiveStart(ModelView):
    "Waive Collection Costs"
    __name__ = 'payt.case.waive.start'
    __string__ = "Waive Collection Costs"
    reason = fields.Text("Reason", required=True,
        help="Recorded on the case and shown on its letters' dossier.")


class CaseWaive(Wizard):
    "Waive Collection Costs"
    __name__ = 'payt.case.waive'
    __string__ = "Waive Collection Costs"
    start = StateView('payt.case.waive.start',
        'payt_dunning.case_waive_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Waive", 'waive', 'tryton-ok', default=True),
            ])
    waive = StateTransition()

    def default_start(self, fields):
        return {'reason': self.record.waive_reason}

    def transition_waive(self):
        Case = Pool().get('payt.case')
        Case.write(list(self.records), {'waive_reason': self.start.reason})
        Case.waive_costs(list(self.records))
        return 'end'


# ------------------------------------------------------------------ run

class Run(metaclass=PoolMeta):
    __name__ = 'payt.run'

    @classmethod
    def execute(cls, administration, date, dry_run=False):
        "The flow's run, then the cases: open, charge, escalate."
        if not dry_run:
            summary = super().execute(administration, date, dry_run=False)
            summary['cases'] = cls._cases(administration, date, summary)
            runs = cls.search([('administration', '=', administration.id),
                    ('date', '=', date)], order=[('id', 'DESC')], limit=1)
            if runs:
                cls.write(runs, {'summary': json.dumps(summary, indent=1)})
            return summary
        # The real runs inside one savepoint so the preview shows the
        # cases the flow would open today.
        cursor = Transaction().connection.cursor()
        cursor.execute('SAVEPOINT payt_case_dry_run')
        try:
            summary = super().execute(administration, date, dry_run=False)
            summary['cases'] = cls._cases(administration, date, summary)
        finally:
            cursor.execute('ROLLBACK TO SAVEPOINT payt_case_dry_run')
            cursor.execute('RELEASE SAVEPOINT payt_case_dry_run')
            invalidate_caches()
        summary['dry_run'] = True
        return summary

    @classmethod
    def _cases(cls, administration, date, summary):
        if summary.get('state') != 'done':
            return {}
        return Pool().get('payt.case').escalate_all(administration, date)


# ----------------------------------------------------------------- demo

def build_cases(pool, administrations, today):
    """Demo: short lead times on the first administration, its cases
    replayed over the last weeks, then a payment, a waiver, a write-off
    and a dossier, so every state and figure shows."""
    Config = pool.get('payt.case.configuration')
    Case = pool.get('payt.case')
    administration = administrations[0]
    Config.create([{'administration': administration.id,
                'steps': [('create', [
                            {'state': 'second_reminder', 'lead_days': 3},
                            {'state': 'notice_of_default', 'lead_days': 3},
                            {'state': 'ready', 'lead_days': 3},
                            ])]}])
    cases = Case.search([('administration', '=', administration.id)])
    start = min((c.date for c in cases), default=today)
    for offset in range((today - start).days + 1):
        Case.escalate_all(administration,
            start + datetime.timedelta(days=offset))
    cases = Case.search([('administration', '=', administration.id),
            ('state', '!=', 'closed')], order=[('id', 'ASC')])
    CasePayment = pool.get('payt.case.payment')
    with Transaction().set_context(payt_case_date=today):
        paying = [c for c in cases if c.costs]
        if paying:
            case = paying[0]
            CasePayment.create([{'case': case.id, 'date': today,
                        'amount': min(case.remaining_total,
                            (case.costs_amount + Decimal('25.00')))}])
        if len(cases) > 2:
            Case.write([cases[1]], {
                    'waive_reason': "Coulance: vaste klant sinds 2009"})
            Case.waive_costs([cases[1]])
            Case.write_off([cases[2]])
        ready = [c for c in Case.browse([c.id for c in cases])
            if c.state == 'ready']
        if ready:
            Case.export_dossier(ready[:1])
        if len(cases) > 3 and cases[3].state == 'ready':
            Case.hand_over([cases[3]])
    return Case.search([('administration', 'in',
                [a.id for a in administrations])])
