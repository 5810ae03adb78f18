# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""DSO over time: a snapshot per administration and day, written by the
daily run, shown as a line graph.

DSO (days sales outstanding) on a day = receivables open that day / the
invoiced amount of the 90 days before it * 90. "Open that day" is rebuilt
from the items: invoiced on or before the day and not yet paid then."""
import datetime
from decimal import Decimal

from sql.aggregate import Sum
from sql.conditionals import Case, Coalesce

from trytond.model import ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction

from .bulk import const
from .company import CompanyConsistentMixin

PERIOD = 90


class Snapshot(CompanyConsistentMixin, ModelSQL, ModelView):
    "DSO Snapshot"
    __name__ = 'payt.dso.snapshot'
    __string__ = "DSO Snapshot"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        readonly=True, ondelete='CASCADE')
    date = fields.Date("Date", required=True, readonly=True)
    receivables = fields.Numeric("Open Receivables", digits=(16, 2),
        readonly=True)
    sales = fields.Numeric("Invoiced (90 days)", digits=(16, 2),
        readonly=True)
    overdue = fields.Numeric("Overdue", digits=(16, 2), readonly=True)
    dso = fields.Numeric("DSO (days)", digits=(16, 1), readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('administration_date_unique',
                Unique(t, t.administration, t.date),
                'payt_dunning.msg_dso_snapshot_unique'),
            ]
        cls._order = [
            ('administration', 'ASC'), ('date', 'ASC'), ('id', 'ASC')]

    def get_rec_name(self, name):
        return '%s %s' % (self.administration.rec_name, self.date)

    @classmethod
    def figures(cls, administration, date):
        "(receivables, sales, overdue) of the administration on date."
        item = Pool().get('payt.item').__table__()
        cursor = Transaction().connection.cursor()
        zero = const(0, 'NUMERIC')
        invoiced = Coalesce(item.invoice_date, item.due_date)
        # Open that day: the open amount if still open, the whole amount if
        # it was paid after that day.
        open_then = Case(
            ((item.state == 'open') & (item.open_amount > 0),
                item.open_amount),
            ((item.paid_date != None) & (item.paid_date > date),  # noqa: E711
                item.amount),
            else_=zero)
        since = date - datetime.timedelta(days=PERIOD)
        cursor.execute(*item.select(
                Sum(Case((invoiced <= date, open_then), else_=zero)),
                Sum(Case(((invoiced <= date) & (invoiced > since),
                            item.amount), else_=zero)),
                Sum(Case(((invoiced <= date) & (item.due_date < date),
                            open_then), else_=zero)),
                where=item.administration == administration.id))
        receivables, sales, overdue = cursor.fetchone()
        money = lambda v: Decimal(str(v or 0)).quantize(Decimal('0.01'))
        return money(receivables), money(sales), money(overdue)

    @classmethod
    def record(cls, administration, date):
        "Write (or rewrite) the administration's snapshot of the day."
        receivables, sales, overdue = cls.figures(administration, date)
        dso = (receivables / sales * PERIOD).quantize(Decimal('0.1')) if (
            sales) else Decimal('0.0')
        values = {'receivables': receivables, 'sales': sales,
            'overdue': overdue, 'dso': dso}
        existing = cls.search([
                ('administration', '=', administration.id),
                ('date', '=', date),
                ], limit=1)
        if existing:
            cls.write(existing, values)
            return existing[0]
        snapshot, = cls.create([dict(values,
                    company=administration.company.id,
                    administration=administration.id, date=date)])
        return snapshot


class Run(metaclass=PoolMeta):
    __name__ = 'payt.run'

    @classmethod
    def execute(cls, administration, date, dry_run=False):
        summary = super().execute(administration, date, dry_run=dry_run)
        if not dry_run:
            Pool().get('payt.dso.snapshot').record(administration, date)
        return summary


class StepSummary(metaclass=PoolMeta):
    "Per step also the items being followed: what a pause takes out."
    __name__ = 'payt.dashboard.step'
    followed = fields.Function(fields.Integer("Being Followed",
            help="Open items of the step that are not paused or stopped."),
        'get_followed')
    items = fields.Function(fields.Many2Many('payt.item', None, None,
            "Open Items Being Followed"), 'get_followed')

    @classmethod
    def get_followed(cls, summaries, names):
        pool = Pool()
        Item = pool.get('payt.item')
        Pause = pool.get('payt.pause')
        today = pool.get('ir.date').today()
        result = {n: {} for n in names}
        for summary in summaries:
            items = Item.search([
                    ('administration', '=', summary.administration.id),
                    ('step', '=', summary.step.id if summary.step else None),
                    ('state', '=', 'open'),
                    ], order=[('due_date', 'ASC'), ('id', 'ASC')])
            held = Pause.search([
                    ('state', '=', 'active'),
                    ('administration', '=', summary.administration.id),
                    ['OR', ('end_date', '=', None),
                        ('end_date', '>=', today)],
                    ['OR', ('item', 'in', [i.id for i in items]),
                        [('item', '=', None),
                            ('debtor', 'in', list({i.debtor.id
                                        for i in items}))]],
                    ])
            held_items = {p.item.id for p in held if p.item}
            held_debtors = {p.debtor.id for p in held if not p.item}
            followed = [i.id for i in items if i.id not in held_items
                and i.debtor.id not in held_debtors]
            if 'items' in result:
                result['items'][summary.id] = followed
            if 'followed' in result:
                result['followed'][summary.id] = len(followed)
        return result
