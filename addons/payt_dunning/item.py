# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Open items: the invoices being followed up."""
import datetime


from trytond.model import (
    Index, ModelSQL, ModelView, Unique, fields)
from trytond.pool import Pool
from trytond.pyson import Eval

from .company import CompanyConsistentMixin
from .pause import PausableMixin

_read = {'readonly': True}


class OpenItem(CompanyConsistentMixin, PausableMixin, ModelSQL, ModelView):
    "Open Item"
    __name__ = 'payt.item'
    __string__ = "Open Item"
    _rec_name = 'number'
    company = fields.Many2One(
        'company.company', "Company", required=True, **_read)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        ondelete='CASCADE', **_read)
    debtor = fields.Many2One(
        'payt.debtor', "Debtor", required=True, ondelete='CASCADE',
        domain=[('administration', '=', Eval('administration', -1))],
        **_read)
    external_id = fields.Char("External ID", required=True, **_read)
    number = fields.Char("Invoice Number", **_read)
    description = fields.Char("Description", **_read)
    invoice_date = fields.Date("Invoice Date", **_read)
    due_date = fields.Date("Due Date", required=True, **_read)
    currency = fields.Many2One(
        'currency.currency', "Currency", required=True, **_read)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True, **_read)
    open_amount = fields.Numeric("Open Amount", digits=(16, 2),
        required=True, **_read)
    state = fields.Selection([
            ('open', "Open"),
            ('paid', "Paid"),
            ], "State", required=True, **_read)
    paid_date = fields.Date("Paid On", **_read)
    step = fields.Many2One('payt.flow.step', "Current Step",
        ondelete='SET NULL', **_read)
    step_date = fields.Date("Step Reached On", **_read)
    next_step = fields.Function(
        fields.Many2One('payt.flow.step', "Next Step"), 'get_next')
    next_date = fields.Function(fields.Date("Next Step On"), 'get_next')
    days_overdue = fields.Function(
        fields.Integer("Days Overdue"), 'get_days_overdue')
    events = fields.One2Many('payt.event', 'item', "Timeline",
        readonly=True)
    communications = fields.One2Many(
        'payt.communication', 'item', "Communications", readonly=True)
    payments = fields.One2Many('payt.payment', 'item', "Payments",
        readonly=True)
    pauses = fields.One2Many('payt.pause', 'item', "Pauses", readonly=True)
    attentions = fields.One2Many('payt.attention', 'item',
        "Points of Attention", readonly=True)
    needs_attention = fields.Function(
        fields.Boolean("Needs Attention"), 'get_needs_attention',
        searcher='search_needs_attention')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('external_unique', Unique(t, t.administration, t.external_id),
                'payt_dunning.msg_item_external_unique'),
            ]
        # The daily run selects open items of an administration by due date.
        cls._sql_indexes.update({
                Index(t,
                    (t.administration, Index.Range()),
                    (t.due_date, Index.Range()),
                    where=t.state == 'open'),
                Index(t, (t.debtor, Index.Range())),
                Index(t, (t.company, Index.Range())),
                })
        cls._order = [('due_date', 'ASC'), ('id', 'ASC')]

    @staticmethod
    def default_state():
        return 'open'

    def pause_scope(self):
        return {'administration': self.administration.id,
            'debtor': self.debtor.id, 'item': self.id}

    @classmethod
    def get_follow_up(cls, items, name):
        "Effective state: the item's own, its debtor's or administration's."
        pool = Pool()
        Debtor = pool.get('payt.debtor')
        Administration = pool.get('payt.administration')
        rank = {'active': 0, 'paused': 1, 'stopped': 2}
        own = super().get_follow_up(items, name)
        debtors = Debtor.get_follow_up(
            list({i.debtor for i in items}), name)
        administrations = Administration.get_follow_up(
            list({i.administration for i in items}), name)
        return {i.id: max(
                own[i.id], debtors[i.debtor.id],
                administrations[i.administration.id], key=rank.get)
            for i in items}

    @classmethod
    def get_next(cls, items, names):
        "The first step after the current one, and the day it is due."
        result = {n: {} for n in names}
        for item in items:
            step = None
            if item.state == 'open':
                steps = item.administration.flow.steps_in_order()
                current = item.step.lead_days if item.step else None
                step = next((s for s in steps
                        if current is None or s.lead_days > current), None)
            if 'next_step' in names:
                result['next_step'][item.id] = step.id if step else None
            if 'next_date' in names:
                result['next_date'][item.id] = (
                    item.due_date + datetime.timedelta(days=step.lead_days)
                    if step else None)
        return result

    def get_days_overdue(self, name):
        today = Pool().get('ir.date').today()
        return (today - self.due_date).days if self.state == 'open' else None

    @classmethod
    def get_needs_attention(cls, items, name):
        Attention = Pool().get('payt.attention')
        flagged = {a.item.id for a in Attention.search([
                    ('item', 'in', [i.id for i in items]),
                    ('state', '=', 'open'),
                    ])}
        return {i.id: i.id in flagged for i in items}

    @classmethod
    def search_needs_attention(cls, name, clause):
        _, operator, value = clause
        wanted = (operator == '=') == bool(value)
        return [('attentions', 'where' if wanted else 'not where',
                [('state', '=', 'open')])]


class Payment(CompanyConsistentMixin, ModelSQL, ModelView):
    "Payment"
    __name__ = 'payt.payment'
    __string__ = "Payment"
    company = fields.Many2One(
        'company.company', "Company", required=True, **_read)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        ondelete='CASCADE', **_read)
    item = fields.Many2One('payt.item', "Open Item", ondelete='CASCADE',
        **_read)
    external_id = fields.Char("External ID", required=True, **_read)
    date = fields.Date("Date", required=True, **_read)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True,
        **_read)
    source = fields.Selection([
            ('import', "Accounting package"),
            ('online', "Online payment"),
            ('statement', "Bank statement"),
            ], "Source", required=True, **_read)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('external_unique', Unique(t, t.administration, t.external_id),
                'payt_dunning.msg_payment_external_unique'),
            ]
        cls._order = [('date', 'DESC'), ('id', 'DESC')]

    @staticmethod
    def default_source():
        return 'import'
