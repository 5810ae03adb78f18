# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""What a debtor owes now.

One computation for the portal page, the plan a debtor requests there and
the payment data every page states, so that they always agree with each
other and with the collection case the back office shows: an item outside
a case owes its open amount; an item in an open case owes its share of the
case's principal, and the case separately owes its costs and interest."""
from dataclasses import dataclass, field
from decimal import Decimal

from trytond.pool import Pool

ZERO = Decimal(0)


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

    def numbers(self):
        "The invoice numbers a transfer of the total pays."
        return [i.item.number or i.item.external_id for i in self.items
            if i.principal > 0]


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
