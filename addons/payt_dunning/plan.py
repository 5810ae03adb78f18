# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Payment plans: the open items (and cases) of one debtor paid in terms.

While a plan runs its items are paused in the flow (an automatic pause
named after the plan); cancelling or breaking it lifts that pause, so the
flow resumes where it stood. What has been paid is read from the items
themselves (their open amount going down, whatever the source: import,
bank statement, online payment) and applied to the terms in order. The
daily run sends term reminders (also while paused: a plan is an agreement
with the debtor) and expires missed terms."""
import datetime
from decimal import ROUND_DOWN, Decimal

from dateutil.relativedelta import relativedelta

from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, Workflow, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Bool, Eval, If
from trytond.transaction import Transaction
from trytond.wizard import Button, StateAction, StateView, Wizard

from .company import CompanyConsistentMixin
from .timeline import event_params

STATES = [
    ('draft', "Draft"),
    ('running', "Running"),
    ('completed', "Completed"),
    ('cancelled', "Cancelled"),
    ('broken', "Broken"),
    ]
_draft = {'readonly': Eval('state') != 'draft'}


def mail_text(key, language):
    """The plan's email text `key` (message msg_plan_<key>): Dutch from
    locale/nl.po, English for a language without translation."""
    return gettext('payt_dunning.msg_plan_' + key, language)


def split_equal(total, count, digits=2):
    """Equal terms rounded down to the currency; the remainder goes on the
    last term, so the terms always sum exactly to the total."""
    if count < 1:
        raise ValueError(count)
    quantum = Decimal(1).scaleb(-digits)
    base = (total / count).quantize(quantum, rounding=ROUND_DOWN)
    return [base] * (count - 1) + [total - base * (count - 1)]


def monthly_dates(start, count):
    "The start date and the same day of the following months."
    return [start + relativedelta(months=i) for i in range(count)]


class Plan(CompanyConsistentMixin, Workflow, ModelSQL, ModelView):
    "Payment Plan"
    __name__ = 'payt.plan'
    __string__ = "Payment Plan"
    company = fields.Many2One('company.company', "Company", required=True,
        readonly=True)
    administration = fields.Many2One('payt.administration',
        "Administration", required=True, ondelete='CASCADE',
        states=_draft)
    debtor = fields.Many2One('payt.debtor', "Debtor", required=True,
        ondelete='CASCADE', states=_draft,
        domain=[('administration', '=', Eval('administration', -1))])
    currency = fields.Function(fields.Many2One('currency.currency',
            "Currency"), 'on_change_with_currency')
    lines = fields.One2Many('payt.plan.line', 'plan', "Items and Cases",
        states=_draft)
    terms = fields.One2Many('payt.plan.term', 'plan', "Terms",
        states=_draft, order=[('due_date', 'ASC'), ('id', 'ASC')])
    number_of_terms = fields.Integer("Number of Terms", required=True,
        states=_draft, domain=[('number_of_terms', '>=', 1)])
    start_date = fields.Date("First Term On", required=True, states=_draft)
    frequency = fields.Selection([
            ('monthly', "Monthly"),
            ('custom', "Custom dates"),
            ], "Dates", required=True, states=_draft)
    split = fields.Selection([
            ('equal', "Equal amounts"),
            ('manual', "Edited by hand"),
            ], "Amounts", required=True, states=_draft)
    reminder_days = fields.Integer("Remind Days Before Term", required=True,
        domain=[('reminder_days', '>=', 0)],
        help="A reminder goes to the debtor this many days before each "
        "term, also while follow-up is paused.")
    break_on_missed = fields.Boolean("Break on Missed Term",
        help="A missed term ends the plan and resumes the normal flow; "
        "otherwise the plan keeps running and the term raises attention.")
    total = fields.Function(fields.Numeric("Total", digits=(16, 2)),
        'get_amounts')
    paid_amount = fields.Function(fields.Numeric("Paid", digits=(16, 2)),
        'get_amounts')
    remaining = fields.Function(fields.Numeric("Remaining", digits=(16, 2)),
        'get_amounts')
    state = fields.Selection(STATES, "State", required=True, readonly=True)
    requested = fields.Boolean("Requested by Debtor", readonly=True)
    request_note = fields.Text("Debtor's Request", readonly=True)
    start_datetime = fields.Timestamp("Started At", readonly=True)
    end_date = fields.Date("Ended On", readonly=True)
    schedule_sent = fields.Timestamp("Schedule Sent", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order = [('id', 'DESC')]
        cls._transitions |= {
            ('draft', 'running'),
            ('draft', 'cancelled'),
            ('running', 'completed'),
            ('running', 'cancelled'),
            ('running', 'broken'),
            }
        cls._buttons.update({
                'compute_terms': {
                    'invisible': Eval('state') != 'draft',
                    'depends': ['state'],
                    },
                'start': {
                    'invisible': Eval('state') != 'draft',
                    'depends': ['state'],
                    },
                'cancel': {
                    'invisible': ~Eval('state').in_(['draft', 'running']),
                    'depends': ['state'],
                    },
                'break_': {
                    'invisible': Eval('state') != 'running',
                    'depends': ['state'],
                    },
                })

    @staticmethod
    def default_state():
        return 'draft'

    @staticmethod
    def default_frequency():
        return 'monthly'

    @staticmethod
    def default_split():
        return 'equal'

    @staticmethod
    def default_number_of_terms():
        return 3

    @staticmethod
    def default_reminder_days():
        return 3

    @staticmethod
    def default_break_on_missed():
        return False

    @staticmethod
    def default_requested():
        return False

    @classmethod
    def default_start_date(cls):
        return cls.earliest_start_date(cls.default_reminder_days())

    @staticmethod
    def default_company():
        return Transaction().context.get('company')

    @fields.depends('administration')
    def on_change_with_currency(self, name=None):
        if self.administration:
            return self.administration.company.currency.id

    def get_rec_name(self, name):
        return "Plan %s (%s)" % (self.id,
            self.debtor.rec_name if self.debtor else '')

    @classmethod
    def search_rec_name(cls, name, clause):
        return [('debtor.name',) + tuple(clause[1:])]

    @classmethod
    def get_amounts(cls, plans, names):
        result = {n: {} for n in names}
        for plan in plans:
            total = sum((l.amount or 0 for l in plan.lines), Decimal(0))
            paid = plan._paid()
            values = {'total': total, 'paid_amount': paid,
                'remaining': max(total - paid, Decimal(0))}
            for name in names:
                result[name][plan.id] = values[name]
        return result

    def _paid(self):
        "The decrease of what the lines cover since the plan was made."
        paid = Decimal(0)
        for line in self.lines:
            paid += max((line.amount or 0) - line.current_amount(),
                Decimal(0))
        return paid

    def round(self, amount):
        return self.administration.company.currency.round(amount)

    def items(self):
        "Every open item the plan covers, through items or cases."
        result = []
        for line in self.lines:
            for item in line.covered_items():
                if item not in result:
                    result.append(item)
        return result

    @staticmethod
    def earliest_start_date(reminder_days):
        """The first day a term may fall due: after the day its reminder
        goes out (`reminder_days` before), and never today."""
        today = Pool().get('ir.date').today()
        return today + datetime.timedelta(days=max(reminder_days, 0) + 1)

    @classmethod
    def create_for(cls, debtor, items, cases, number_of_terms, start_date,
            reminder_days=3, break_on_missed=False, **values):
        "A draft plan over items and cases of one debtor, with equal terms."
        lines = [{'item': i.id, 'amount': i.open_amount} for i in items]
        lines += [{'case': c.id, 'amount': c.remaining_total} for c in cases]
        plan, = cls.create([dict({
                    'company': debtor.company.id,
                    'administration': debtor.administration.id,
                    'debtor': debtor.id, 'number_of_terms': number_of_terms,
                    'start_date': start_date, 'reminder_days': reminder_days,
                    'break_on_missed': break_on_missed,
                    'lines': [('create', lines)]}, **values)])
        cls.compute_terms([plan])
        return cls(plan.id)

    # ----------------------------------------------------------- terms
    @classmethod
    @ModelView.button
    def compute_terms(cls, plans):
        "Terms from the number, the start date and equal amounts."
        Term = Pool().get('payt.plan.term')
        for plan in plans:
            if plan.state != 'draft':
                continue
            total = plan.total
            digits = plan.administration.company.currency.digits
            count = plan.number_of_terms
            existing = sorted(plan.terms, key=lambda t: (t.due_date, t.id))
            if plan.frequency == 'monthly' or len(existing) != count:
                dates = monthly_dates(plan.start_date, count)
            else:
                dates = [t.due_date for t in existing]
            if plan.split == 'equal' or len(existing) != count:
                amounts = split_equal(total, count, digits)
            else:
                amounts = [t.amount for t in existing]
            Term.delete(existing)
            Term.create([{'plan': plan.id, 'number': i + 1, 'due_date': d,
                        'amount': a}
                    for i, (d, a) in enumerate(zip(dates, amounts))])

    def check_terms(self):
        terms = sorted(self.terms, key=lambda t: (t.due_date, t.id))
        if not self.lines:
            raise UserError(gettext('payt_dunning.msg_plan_no_lines',
                    plan=self.rec_name))
        if not terms:
            raise UserError(gettext('payt_dunning.msg_plan_no_terms',
                    plan=self.rec_name))
        total = sum((t.amount for t in terms), Decimal(0))
        if total != self.total:
            raise UserError(gettext('payt_dunning.msg_plan_terms_sum',
                    plan=self.rec_name, terms=total, total=self.total))
        for term in terms:
            if term.amount <= 0 or self.round(term.amount) != term.amount:
                raise UserError(gettext(
                        'payt_dunning.msg_plan_term_amount',
                        plan=self.rec_name, amount=term.amount))
        dates = [t.due_date for t in terms]
        if len(set(dates)) != len(dates):
            raise UserError(gettext('payt_dunning.msg_plan_term_dates',
                    plan=self.rec_name))
        for line in self.lines:
            if line.item and line.item.debtor != self.debtor or (
                    line.case and line.case.debtor != self.debtor):
                raise UserError(gettext('payt_dunning.msg_plan_debtor',
                        plan=self.rec_name))

    # ------------------------------------------------------- workflow
    @classmethod
    @ModelView.button
    @Workflow.transition('running')
    def start(cls, plans):
        pool = Pool()
        Pause = pool.get('payt.pause')
        Attention = pool.get('payt.attention')
        Term = pool.get('payt.plan.term')
        for plan in plans:
            plan.check_terms()
        # Renumber in date order, once, for the schedule and reminders.
        for plan in plans:
            terms = sorted(plan.terms, key=lambda t: (t.due_date, t.id))
            for number, term in enumerate(terms, 1):
                term.number = number
            Term.save(terms)
        cls.write(plans, {'start_datetime': datetime.datetime.now()})
        for plan in plans:
            items = plan.items()
            if items:
                Pause.hold(items, 'pause', "Payment plan %s" % plan.id,
                    automatic=plan._automatic())
            for attention in Attention.search([
                        ('debtor', '=', plan.debtor.id),
                        ('reason', '=', 'plan_requested'),
                        ('state', '=', 'open')]):
                Attention.resolve([attention])
            plan._timeline('msg_event_plan_started', amount=plan.total,
                terms=len(plan.terms))
            plan.send_schedule()

    @classmethod
    @ModelView.button
    @Workflow.transition('cancelled')
    def cancel(cls, plans):
        cls._end(plans, "cancelled")

    @classmethod
    @ModelView.button
    @Workflow.transition('broken')
    def break_(cls, plans):
        cls._end(plans, "broken")

    @classmethod
    @Workflow.transition('completed')
    def complete(cls, plans):
        cls._end(plans, "completed")

    @classmethod
    def _end(cls, plans, how):
        "Lift the plan's pauses: the flow resumes where each item stood."
        Pause = Pool().get('payt.pause')
        today = Pool().get('ir.date').today()
        for plan in plans:
            pauses = Pause.search([
                    ('automatic', '=', plan._automatic()),
                    ('state', '=', 'active')])
            Pause.lift(pauses)
            if plan.start_datetime:
                plan._timeline('msg_event_plan_' + how)
        cls.write(plans, {'end_date': today})

    def _automatic(self):
        return 'plan:%s' % self.id

    def _timeline(self, text_key, date=None, **params):
        pool = Pool()
        Event = pool.get('payt.event')
        date = date or pool.get('ir.date').today()
        Event.create([{'company': self.company.id, 'item': item.id,
                    'date': date, 'kind': 'plan', 'text_key': text_key,
                    'text_params': event_params(plan=self.id, **params)}
                for item in self.items()])

    # ---------------------------------------------------------- emails
    def _texts(self):
        from .communication import format_date, format_money
        language = self.debtor.language or 'nl'
        currency = self.administration.company.currency
        return (language,
            lambda d: format_date(d, language),
            lambda a: format_money(a, currency, language))

    def _mail_values(self):
        from .communication import PORTAL_LINK
        return {'debtor': self.debtor.name,
            'company': self.company.rec_name,
            'portal_url': PORTAL_LINK}

    def _notify(self, kind, subject, body):
        "A row of the communication outbox (Communication.notify)."
        Communication = Pool().get('payt.communication')
        items = self.items()
        return Communication.notify(kind, self.debtor,
            items[0] if items else None, subject, body)

    def send_schedule(self):
        """The schedule, delivered now through the outbox: the debtor (in
        the portal) or the user starting the plan expects it."""
        Communication = Pool().get('payt.communication')
        language, date, money = self._texts()
        lines = [mail_text('term_line', language) % {'number': t.number,
                'date': date(t.due_date), 'amount': money(t.amount)}
            for t in sorted(self.terms, key=lambda t: t.number or 0)]
        values = dict(self._mail_values(), total=money(self.total),
            count=len(self.terms), terms='\n'.join(lines))
        communication = self._notify('plan_schedule',
            mail_text('schedule_subject', language) % values,
            mail_text('schedule_body', language) % values)
        for sent in Communication.notify_now([communication]):
            if sent.state == 'sent':
                self.schedule_sent = datetime.datetime.now()
                self.save()

    # --------------------------------------------------- the daily part
    @classmethod
    def process(cls, administration, date):
        """Apply payments to terms, complete paid plans, send reminders
        and expire missed terms. Runs whatever the follow-up state."""
        plans = cls.search([('administration', '=', administration.id),
                ('state', '=', 'running')])
        summary = {'reminders': 0, 'expired': 0, 'completed': 0,
            'broken': 0}
        for plan in plans:
            outcome = plan._process(date)
            for key in summary:
                summary[key] += outcome.get(key, 0)
        return summary

    @classmethod
    def apply_payments(cls, plans):
        "Spread what was paid over the terms in order; complete paid plans."
        Term = Pool().get('payt.plan.term')
        done = []
        for plan in plans:
            if plan.state != 'running':
                continue
            left = plan._paid()
            terms = sorted(plan.terms, key=lambda t: t.number or 0)
            for term in terms:
                term.paid_amount = min(term.amount, left)
                left -= term.paid_amount
                if term.paid_amount >= term.amount:
                    term.state = 'paid'
                elif term.state == 'paid':
                    term.state = 'open'
            Term.save(terms)
            if all(t.state == 'paid' for t in terms):
                done.append(plan)
        if done:
            cls.complete(done)
        return done

    def _process(self, date):
        pool = Pool()
        Attention = pool.get('payt.attention')
        Term = pool.get('payt.plan.term')
        outcome = {}
        if self.apply_payments([self]):
            return {'completed': 1}
        language, fdate, money = self._texts()
        for term in sorted(self.terms, key=lambda t: t.number or 0):
            if term.state == 'paid':
                continue
            open_amount = term.amount - (term.paid_amount or 0)
            if (term.reminder_date is None and term.state == 'open'
                    and term.due_date - datetime.timedelta(
                        days=self.reminder_days) <= date <= term.due_date):
                values = dict(self._mail_values(), number=term.number,
                    date=fdate(term.due_date), amount=money(open_amount))
                # In the outbox: the sender delivers it after the run.
                if self._notify('plan_reminder',
                        mail_text('reminder_subject', language) % values,
                        mail_text('reminder_body', language) % values):
                    term.reminder_date = date
                    Term.save([term])
                    self._timeline('msg_event_plan_term_reminder', date,
                        term=term.number, amount=open_amount,
                        due_date=term.due_date)
                    outcome['reminders'] = outcome.get('reminders', 0) + 1
            if term.state == 'open' and term.due_date < date:
                term.state = 'expired'
                term.expired_date = date
                Term.save([term])
                outcome['expired'] = outcome.get('expired', 0) + 1
                Attention.raise_for(self.administration, 'plan_term_expired',
                    'msg_attention_plan_term_expired', debtor=self.debtor,
                    term=term.number, plan=self.id, open_amount=open_amount,
                    due_date=term.due_date)
                self._timeline('msg_event_plan_term_expired', date,
                    term=term.number)
                if self.break_on_missed:
                    self.__class__.break_([self])
                    outcome['broken'] = 1
                    break
        return outcome


class PlanLine(CompanyConsistentMixin, ModelSQL, ModelView):
    "Payment Plan Line"
    _company_path = 'plan.company'
    __name__ = 'payt.plan.line'
    __string__ = "Payment Plan Line"
    plan = fields.Many2One('payt.plan', "Plan", required=True,
        ondelete='CASCADE')
    item = fields.Many2One('payt.item', "Open Item", ondelete='RESTRICT',
        domain=[If(Eval('item_debtor'),
                ('debtor', '=', Eval('item_debtor', -1)), ())],
        states={'readonly': Bool(Eval('case'))})
    case = fields.Many2One('payt.case', "Collection Case",
        ondelete='RESTRICT')
    item_debtor = fields.Function(fields.Many2One('payt.debtor', "Debtor"),
        'on_change_with_item_debtor')
    amount = fields.Numeric("Amount", digits=(16, 2), required=True,
        help="The amount the plan covers for this item or case when made.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('plan')

    @fields.depends('plan', '_parent_plan.debtor')
    def on_change_with_item_debtor(self, name=None):
        if self.plan and self.plan.debtor:
            return self.plan.debtor.id

    @fields.depends('item', 'case')
    def on_change_item(self):
        if self.item:
            self.amount = self.item.open_amount

    @fields.depends('item', 'case')
    def on_change_case(self):
        if self.case:
            self.amount = self.case.remaining_total

    def get_rec_name(self, name):
        if self.case:
            return self.case.rec_name
        return self.item.rec_name if self.item else ''

    def covered_items(self):
        if self.case:
            return [i for i in self.case.items]
        return [self.item] if self.item else []

    def current_amount(self):
        "What is still owed on the line's item or case now."
        if self.case:
            return max(self.case.remaining_total or 0, Decimal(0))
        if not self.item or self.item.state != 'open':
            return Decimal(0)
        return max(self.item.open_amount, Decimal(0))


class PlanTerm(ModelSQL, ModelView):
    "Payment Plan Term"
    __name__ = 'payt.plan.term'
    __string__ = "Payment Plan Term"
    plan = fields.Many2One('payt.plan', "Plan", required=True,
        ondelete='CASCADE')
    number = fields.Integer("Term", readonly=True)
    due_date = fields.Date("Due Date", required=True)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True)
    paid_amount = fields.Numeric("Paid", digits=(16, 2), readonly=True)
    state = fields.Selection([
            ('open', "Open"),
            ('paid', "Paid"),
            ('expired', "Expired"),
            ], "State", required=True, readonly=True)
    reminder_date = fields.Date("Reminder Sent On", readonly=True)
    expired_date = fields.Date("Expired On", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('plan')
        cls._order = [('due_date', 'ASC'), ('id', 'ASC')]

    @staticmethod
    def default_state():
        return 'open'

    @staticmethod
    def default_paid_amount():
        return Decimal(0)


class OpenItem(metaclass=PoolMeta):
    __name__ = 'payt.item'
    plan_lines = fields.One2Many('payt.plan.line', 'item',
        "Payment Plans", readonly=True)


class Debtor(metaclass=PoolMeta):
    __name__ = 'payt.debtor'
    plans = fields.One2Many('payt.plan', 'debtor', "Payment Plans",
        readonly=True)


class Run(metaclass=PoolMeta):
    __name__ = 'payt.run'

    @classmethod
    def execute(cls, administration, date, dry_run=False):
        "The run, then the payment plans: reminders go out also when held."
        Plan = Pool().get('payt.plan')
        summary = super().execute(administration, date, dry_run=dry_run)
        if not dry_run:
            summary['plans'] = Plan.process(administration, date)
            return summary
        # The preview: the same, inside a savepoint rolled back, no mail.
        from .bulk import invalidate_caches
        cursor = Transaction().connection.cursor()
        cursor.execute('SAVEPOINT payt_plan_dry_run')
        try:
            with Transaction().set_context(payt_dry_run=True):
                summary['plans'] = Plan.process(administration, date)
        finally:
            cursor.execute('ROLLBACK TO SAVEPOINT payt_plan_dry_run')
            cursor.execute('RELEASE SAVEPOINT payt_plan_dry_run')
            invalidate_caches()
        return summary


class PlanCreateStart(ModelView):
    "Create Payment Plan"
    __name__ = 'payt.plan.create.start'
    __string__ = "Create Payment Plan"
    debtor = fields.Many2One('payt.debtor', "Debtor", readonly=True)
    number_of_terms = fields.Integer("Number of Terms", required=True,
        domain=[('number_of_terms', '>=', 1)])
    start_date = fields.Date("First Term On", required=True)
    reminder_days = fields.Integer("Remind Days Before Term",
        required=True)
    break_on_missed = fields.Boolean("Break on Missed Term")


class PlanCreate(Wizard):
    "Create Payment Plan"
    __name__ = 'payt.plan.create'
    __string__ = "Create Payment Plan"
    start = StateView('payt.plan.create.start',
        'payt_dunning.plan_create_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Create", 'create_', 'tryton-ok', default=True),
            ])
    create_ = StateAction('payt_dunning.act_plan')

    def _selection(self):
        "(debtor, items, cases) of the selected records, of one debtor."
        Item = Pool().get('payt.item')
        items, cases = [], []
        if self.model.__name__ == 'payt.debtor':
            items = Item.search([('debtor', 'in',
                        [d.id for d in self.records]),
                    ('state', '=', 'open'), ('open_amount', '>', 0)])
            debtors = set(self.records)
        elif self.model.__name__ == 'payt.case':
            cases = list(self.records)
            debtors = {c.debtor for c in cases}
        else:
            items = [i for i in self.records if i.state == 'open'
                and i.open_amount > 0]
            debtors = {i.debtor for i in self.records}
        if len(debtors) != 1:
            raise UserError(gettext('payt_dunning.msg_plan_one_debtor'))
        case_items = {i for c in cases for i in c.items}
        items = [i for i in items if i not in case_items
            and not getattr(i, 'case', None)]
        if not items and not cases:
            raise UserError(gettext('payt_dunning.msg_plan_nothing_open'))
        return debtors.pop(), items, cases

    def default_start(self, fields):
        debtor, _, _ = self._selection()
        return {'debtor': debtor.id, 'number_of_terms': 3,
            'start_date': Pool().get('payt.plan').earliest_start_date(3),
            'reminder_days': 3, 'break_on_missed': False}

    def do_create_(self, action):
        Plan = Pool().get('payt.plan')
        debtor, items, cases = self._selection()
        plan = Plan.create_for(debtor, items, cases,
            self.start.number_of_terms, self.start.start_date,
            reminder_days=self.start.reminder_days,
            break_on_missed=self.start.break_on_missed)
        return action, {'res_id': [plan.id]}
