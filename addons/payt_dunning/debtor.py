# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Debtors: read-only copies of the accounting package's customers."""
from decimal import Decimal

from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool

from .company import CompanyConsistentMixin
from .flow import DEBTOR_KINDS, LANGUAGES
from .pause import PausableMixin

# Debtor details come from the accounting package, the source of truth:
# nobody edits them here.
_details = {'readonly': True}


class Debtor(CompanyConsistentMixin, PausableMixin, ModelSQL, ModelView):
    "Debtor"
    __name__ = 'payt.debtor'
    __string__ = "Debtor"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        readonly=True, ondelete='CASCADE')
    external_id = fields.Char("External ID", required=True, readonly=True)
    name = fields.Char("Name", required=True, **_details)
    kind = fields.Selection(DEBTOR_KINDS, "Kind", required=True, **_details)
    email = fields.Char("Email", **_details)
    phone = fields.Char("Phone", **_details)
    language = fields.Selection(LANGUAGES, "Language", required=True,
        **_details)
    street = fields.Char("Street", **_details)
    postal_code = fields.Char("Postal Code", **_details)
    city = fields.Char("City", **_details)
    country = fields.Char("Country", size=2, **_details)
    vat_number = fields.Char("VAT Number", **_details)
    coc_number = fields.Char("Chamber of Commerce Number", **_details)
    party = fields.Many2One('party.party', "Party", readonly=True,
        help="The ERP's own party, where the ERP invoices itself.")
    items = fields.One2Many('payt.item', 'debtor', "Open Items",
        readonly=True, filter=[('state', '=', 'open')])
    planned = fields.Function(
        fields.Many2Many('payt.item', None, None, "Planned Steps"),
        'get_planned')
    open_amount = fields.Function(
        fields.Numeric("Open Amount", digits=(16, 2)), 'get_open_amount')
    pauses = fields.One2Many('payt.pause', 'debtor', "Pauses",
        readonly=True, filter=[('item', '=', None)])

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('external_unique', Unique(t, t.administration, t.external_id),
                'payt_dunning.msg_debtor_external_unique'),
            ]
        cls._sql_indexes.add(Index(t, (t.company, Index.Range())))
        cls._order = [('name', 'ASC'), ('id', 'ASC')]

    @staticmethod
    def default_kind():
        return 'business'

    @staticmethod
    def default_language():
        return 'nl'

    def pause_scope(self):
        return {'administration': self.administration.id,
            'debtor': self.id}

    @classmethod
    def get_open_amount(cls, debtors, name):
        Item = Pool().get('payt.item')
        amounts = {d.id: Decimal('0') for d in debtors}
        for item in Item.search([
                    ('debtor', 'in', [d.id for d in debtors]),
                    ('state', '=', 'open'),
                    ]):
            amounts[item.debtor.id] += item.open_amount
        return amounts

    def get_planned(self, name):
        "Open items with a next step, soonest first."
        items = [i for i in self.items if i.next_date]
        return [i.id for i in sorted(items, key=lambda i: i.next_date)]
