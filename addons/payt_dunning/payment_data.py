# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""What a debtor owes now, and how to pay it (issue 9 item 5).

One computation for the portal page, the plan a debtor requests there and
the payment data every page states, so that they always agree with each
other and with the collection case the back office shows: an item outside
a case owes its open amount; an item in an open case owes its share of the
case's principal, and the case separately owes its costs and interest."""
from dataclasses import dataclass, field
from decimal import Decimal

from stdnum import iban as stdnum_iban

from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.model import fields
from trytond.pool import Pool, PoolMeta

ZERO = Decimal(0)
# SEPA remittance information: 140 characters at most.
MAX_REFERENCE = 140


@dataclass
class ItemOwed:
    item: object
    principal: Decimal
    case: object = None


@dataclass
class CaseOwed:
    case: object
    costs: Decimal
    interest: Decimal


@dataclass
class Balance:
    items: list = field(default_factory=list)
    cases: list = field(default_factory=list)

    @property
    def principal(self):
        return sum((i.principal for i in self.items), ZERO)

    @property
    def costs(self):
        return sum((c.costs for c in self.cases), ZERO)

    @property
    def interest(self):
        return sum((c.interest for c in self.cases), ZERO)

    @property
    def total(self):
        return self.principal + self.costs + self.interest

    def reference(self):
        "The transfer's reference: the invoice numbers, as SEPA allows."
        numbers = [i.item.number or i.item.external_id for i in self.items
            if i.principal > 0]
        text = ' '.join(numbers)
        if len(text) > MAX_REFERENCE:
            text = text[:MAX_REFERENCE].rsplit(' ', 1)[0]
        return text


def balance(debtor):
    """What the debtor owes now on its open items and open cases.

    Payments already registered on a case's items (online payments, the
    last import) are first booked on the case, costs - interest -
    principal (art. 6:44 BW), as the daily run would."""
    pool = Pool()
    Item = pool.get('payt.item')
    Case = pool.get('payt.case')
    today = pool.get('ir.date').today()
    cases = Case.search([('debtor', '=', debtor.id),
            ('state', '!=', 'closed')])
    if cases:
        Case._sync_payments(cases, today)
        cases = Case.browse([c.id for c in cases])
    result = Balance()
    in_case = {}
    for case in cases:
        for item, principal in case.item_principals().items():
            in_case[item.id] = (case, principal)
        costs, interest = case.remaining_costs, case.remaining_interest
        if costs or interest or any(
                p > 0 for p in case.item_principals().values()):
            result.cases.append(CaseOwed(case, costs, interest))
    items = Item.search([('debtor', '=', debtor.id),
            ('state', '=', 'open')], order=[('due_date', 'ASC'),
            ('id', 'ASC')])
    for item in items:
        if item.id in in_case:
            case, principal = in_case[item.id]
            result.items.append(ItemOwed(item, principal, case))
        else:
            result.items.append(ItemOwed(item, max(item.open_amount, ZERO)))
    return result


class Administration(metaclass=PoolMeta):
    __name__ = 'payt.administration'
    payment_iban = fields.Char("IBAN for Payments",
        help="The account debtors transfer to; stated on the portal.")

    @classmethod
    def validate_fields(cls, administrations, field_names):
        super().validate_fields(administrations, field_names)
        if field_names and 'payment_iban' not in field_names:
            return
        for administration in administrations:
            if (administration.payment_iban
                    and not stdnum_iban.is_valid(administration.payment_iban)):
                raise UserError(gettext('payt_dunning.msg_payment_iban',
                        iban=administration.payment_iban,
                        administration=administration.rec_name))

    @classmethod
    def create(cls, vlist):
        return super().create([cls._compact_iban(v) for v in vlist])

    @classmethod
    def write(cls, *args):
        args = list(args)
        for i in range(1, len(args), 2):
            args[i] = cls._compact_iban(args[i])
        super().write(*args)

    @staticmethod
    def _compact_iban(values):
        if values.get('payment_iban'):
            values = dict(values,
                payment_iban=stdnum_iban.compact(values['payment_iban']))
        return values

    def iban_display(self):
        return stdnum_iban.format(self.payment_iban) \
            if self.payment_iban else ''
