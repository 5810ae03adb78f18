# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Helpers shared by the tests: companies, administrations and batches."""
import datetime
from decimal import Decimal

from trytond.pool import Pool
from trytond.transaction import Transaction

# Relative to the real date: pauses and dashboards use today's date.
TODAY = datetime.date.today()


def days(n):
    return datetime.timedelta(days=n)


def get_euro():
    Currency = Pool().get('currency.currency')
    euros = Currency.search([('code', '=', 'EUR')])
    if euros:
        return euros[0]
    euro, = Currency.create([{
                'name': "Euro", 'code': 'EUR', 'symbol': '€',
                'rounding': Decimal('0.01'), 'digits': 2}])
    return euro


def create_administration(name="Bakkerij De Korenschoof BV", user=True):
    "A company with its administration on the default flow."
    pool = Pool()
    Party = pool.get('party.party')
    Company = pool.get('company.company')
    Administration = pool.get('payt.administration')
    User = pool.get('res.user')
    party, = Party.create([{'name': name}])
    company, = Company.create([{'party': party.id,
                'currency': get_euro().id}])
    if user:
        User.write([User(Transaction().user)], {
                'companies': [('add', [company.id])],
                'company': company.id,
                })
    administration, = Administration.create([{'company': company.id}])
    return administration


def debtor(external_id, kind='business', **values):
    return dict({'external_id': external_id, 'name': "Debtor %s" % external_id,
            'kind': kind, 'email': 'debtor-%s@example.com' % external_id,
            'language': 'nl'}, **values)


def item(external_id, debtor_id, due, amount='121.00', open_amount=None,
        **values):
    return dict({'external_id': external_id, 'debtor': debtor_id,
            'number': 'F-%s' % external_id,
            'invoice_date': (due - days(30)).isoformat(),
            'due_date': due.isoformat(), 'currency': 'EUR',
            'amount': amount,
            'open_amount': amount if open_amount is None else open_amount},
        **values)


def steps(administration):
    "The flow's steps by name of their action and lead time."
    return {s.lead_days: s for s in administration.flow.steps}


def run(administration, date, dry_run=False):
    Run = Pool().get('payt.run')
    return Run.execute(administration, date, dry_run=dry_run)


def items_by_external_id(administration):
    Item = Pool().get('payt.item')
    return {i.external_id: i for i in Item.search(
            [('administration', '=', administration.id)])}
