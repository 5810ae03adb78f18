# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Dashboard figures as SQL views: items per step, ageing buckets."""
from sql.aggregate import Count, Min, Sum
from sql.conditionals import Case

from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

from .bulk import const

# The keys sort in the buckets' order; people read the labels.
AGEING = [
    ('0_not_due', "Not yet due"),
    ('1_1_30', "1-30 days"),
    ('2_31_60', "31-60 days"),
    ('3_61_90', "61-90 days"),
    ('4_90_plus', "90+ days"),
    ]


class _OpenItemFigures(ModelSQL, ModelView):
    company = fields.Many2One('company.company', "Company", readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", readonly=True)
    count = fields.Integer("Open Items", readonly=True)
    amount = fields.Numeric("Open Amount", digits=(16, 2), readonly=True)

    @classmethod
    def _open_items(cls):
        return Pool().get('payt.item').__table__()


class StepSummary(_OpenItemFigures):
    "Open Items per Step"
    __name__ = 'payt.dashboard.step'
    __string__ = "Open Items per Step"
    step = fields.Many2One('payt.flow.step', "Step", readonly=True)
    step_name = fields.Function(fields.Char("Step"), 'get_rec_name')
    lead_days = fields.Integer("Lead Time (days)", readonly=True)
    attention = fields.Function(fields.Integer("Points of Attention",
            help="Open points of attention on the step's items."),
        'get_attention')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        # Items without a step come first: they are not yet due for one.
        cls._order = [
            ('administration', 'ASC'), ('lead_days', 'ASC NULLS FIRST'),
            ('id', 'ASC')]

    @classmethod
    def table_query(cls):
        pool = Pool()
        item = cls._open_items()
        step = pool.get('payt.flow.step').__table__()
        # Min(id) is unique per group: a stable id for the row.
        return item.join(step, 'LEFT', condition=item.step == step.id
            ).select(
                Min(item.id).as_('id'),
                item.company.as_('company'),
                item.administration.as_('administration'),
                item.step.as_('step'),
                Min(step.lead_days).as_('lead_days'),
                Count(item.id).as_('count'),
                Sum(item.open_amount).as_('amount'),
                where=item.state == 'open',
                group_by=[item.company, item.administration, item.step])

    def get_rec_name(self, name):
        if self.step:
            return self.step.rec_name
        return gettext('payt_dunning.msg_dashboard_no_step')

    @classmethod
    def get_attention(cls, summaries, name):
        pool = Pool()
        Attention = pool.get('payt.attention')
        attention = Attention.__table__()
        item = pool.get('payt.item').__table__()
        cursor = Transaction().connection.cursor()
        administrations = list({s.administration.id for s in summaries})
        cursor.execute(*attention.join(item,
                condition=attention.item == item.id).select(
                item.administration, item.step, Count(attention.id),
                where=(attention.state == 'open')
                & (item.state == 'open')
                & item.administration.in_(administrations),
                group_by=[item.administration, item.step]))
        counts = {(a, s): c for a, s, c in cursor}
        return {s.id: counts.get((s.administration.id,
                    s.step.id if s.step else None), 0)
            for s in summaries}


class Ageing(_OpenItemFigures):
    "Open Items by Age"
    __name__ = 'payt.dashboard.ageing'
    __string__ = "Open Items by Age"
    bucket = fields.Selection(AGEING, "Age", readonly=True, sort=False)
    # The graph shows this translated label, in the keys' order.
    bucket_name = fields.Function(fields.Char("Age"), 'get_bucket_name')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._order = [
            ('administration', 'ASC'), ('bucket', 'ASC'), ('id', 'ASC')]

    @classmethod
    def get_bucket_name(cls, ageings, name):
        labels = dict(cls.fields_get(['bucket'])['bucket']['selection'])
        return {a.id: labels.get(a.bucket, a.bucket) for a in ageings}

    @classmethod
    def table_query(cls):
        item = cls._open_items()
        today = Pool().get('ir.date').today()
        bucket = Case(
            (item.due_date >= today, const('0_not_due', 'VARCHAR')),
            (item.due_date >= today - _days(30), const('1_1_30', 'VARCHAR')),
            (item.due_date >= today - _days(60), const('2_31_60', 'VARCHAR')),
            (item.due_date >= today - _days(90), const('3_61_90', 'VARCHAR')),
            else_=const('4_90_plus', 'VARCHAR'))
        # Bucket in a subquery: PostgreSQL does not see two parameterised
        # CASE expressions (SELECT and GROUP BY) as the same.
        aged = item.select(item.id, item.company, item.administration,
            item.open_amount, bucket.as_('bucket'),
            where=item.state == 'open')
        return aged.select(
            Min(aged.id).as_('id'),
            aged.company.as_('company'),
            aged.administration.as_('administration'),
            aged.bucket.as_('bucket'),
            Count(aged.id).as_('count'),
            Sum(aged.open_amount).as_('amount'),
            group_by=[aged.company, aged.administration, aged.bucket])


def _days(n):
    import datetime
    return datetime.timedelta(days=n)
