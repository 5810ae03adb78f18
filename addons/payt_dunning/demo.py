# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Demo data: two administrations, their debtors and open items of every
age, with the daily run applied over the past weeks."""
import datetime
import random
from decimal import Decimal

from .case import build_cases
from .portal import build_portal_demo

ADMINISTRATIONS = ["Bakkerij De Korenschoof BV", "Van Dijk Installatietechniek"]
FIRST = ["Jan", "Sanne", "Pieter", "Fatima", "Daan", "Emma", "Mohamed",
    "Lotte", "Bram", "Noor", "Ruben", "Julia", "Thijs", "Anouk", "Sem"]
LAST = ["de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer",
    "de Boer", "Mulder", "de Groot", "Bos", "Vos", "Peters", "Hendriks"]
BUSINESS = ["Hotel", "Restaurant", "Bouwbedrijf", "Kapsalon", "Garage",
    "Drukkerij", "Tandartspraktijk", "Sportschool", "Bloemisterij", "Cafe"]
PLACES = [("Amsterdam", "1012"), ("Utrecht", "3511"), ("Zwolle", "8011"),
    ("Groningen", "9711"), ("Eindhoven", "5611"), ("Haarlem", "2011")]
HISTORY_DAYS = 45
USERS = [
    # login, name, groups, companies (indexes into ADMINISTRATIONS)
    ('anna', "Anna de Wit", ['group_payt'], [0]),
    ('consultant', "Chris Consultant",
        ['group_payt', 'group_payt_consultant'], [0, 1]),
    ]
PASSWORD = 'payt-demo-2026'
# Valid test IBANs (check digits right, accounts made up), one per
# administration.
DEMO_IBANS = ['NL91 ABNA 0417 1643 00', 'NL20 INGB 0001 2345 67']


def build_demo(pool, seed=2026, progress=print):
    rng = random.Random(seed)
    today = pool.get('ir.date').today()
    euro = _euro(pool)
    _dutch(pool)
    administrations = [_administration(pool, name, euro, iban)
        for name, iban in zip(ADMINISTRATIONS, DEMO_IBANS)]
    _users(pool, administrations)
    start = today - datetime.timedelta(days=HISTORY_DAYS)
    for number, administration in enumerate(administrations):
        batch = _batch(rng, number, today)
        summary = pool.get('payt.administration').import_batch(
            administration.id, batch)
        progress("%s: %s debtors, %s open items imported" % (
                administration.rec_name, summary['debtors_created'],
                summary['items_created']))
    _pauses(pool, administrations[0], today)
    Run = pool.get('payt.run')
    for offset in range(HISTORY_DAYS + 1):
        date = start + datetime.timedelta(days=offset)
        for administration in administrations:
            Run.execute(administration, date)
        if offset % 5 == 0:
            progress("Daily run applied up to %s" % date)
    _payments(pool, administrations[1], rng, today)
    build_cases(pool, administrations, today)
    progress("Collection cases opened, with letters, costs and interest")
    build_portal_demo(pool, administrations, progress=progress)
    return administrations


def _euro(pool):
    Currency = pool.get('currency.currency')
    euros = Currency.search([('code', '=', 'EUR')])
    if euros:
        return euros[0]
    euro, = Currency.create([{'name': "Euro", 'code': 'EUR', 'symbol': '€',
                'rounding': Decimal('0.01'), 'digits': 2}])
    return euro


def _administration(pool, name, euro, iban):
    Party = pool.get('party.party')
    Company = pool.get('company.company')
    Administration = pool.get('payt.administration')
    party, = Party.create([{'name': name}])
    company, = Company.create([{'party': party.id, 'currency': euro.id,
                'timezone': 'Europe/Amsterdam'}])
    administration, = Administration.create([{'company': company.id,
                'iban': iban}])
    return administration


def _dutch(pool):
    "The back office can work in Dutch: the module's nl.po is loaded."
    Lang = pool.get('ir.lang')
    Lang.load_translations(Lang.search([('code', '=', 'nl')]))


def _users(pool, administrations):
    User = pool.get('res.user')
    ModelData = pool.get('ir.model.data')
    companies = [a.company.id for a in administrations]
    ActWindow = pool.get('ir.action.act_window')
    # The back office lands on its dashboard after login.
    dashboard = ActWindow(ModelData.get_id(
            'payt_dunning', 'act_dashboard_step')).action
    admin, = User.search([('login', '=', 'admin')])
    User.write([admin], {'companies': [('add', companies)],
            'company': companies[0]})
    for login, name, groups, indexes in USERS:
        User.create([{
                    'login': login, 'name': name, 'password': PASSWORD,
                    'companies': [('add', [companies[i] for i in indexes])],
                    'company': companies[indexes[0]],
                    'groups': [('add', [ModelData.get_id('payt_dunning', g)
                                for g in groups])],
                    'actions': [('add', [dashboard.id])],
                    }])


def _debtor(rng, number, index):
    city, postcode = rng.choice(PLACES)
    consumer = index % 3 != 0
    if consumer:
        name = "%s %s" % (rng.choice(FIRST), rng.choice(LAST))
    else:
        name = "%s %s" % (rng.choice(BUSINESS), rng.choice(LAST))
    external_id = '%d%03d' % (number + 1, index)
    return {
        'external_id': external_id, 'name': name,
        'kind': 'consumer' if consumer else 'business',
        'email': 'debiteur-%s@example.nl' % external_id,
        'phone': '+316%08d' % rng.randrange(10 ** 8),
        'language': 'en' if index % 7 == 0 else 'nl',
        'street': "Dorpsstraat %d" % rng.randrange(1, 200),
        'postal_code': "%s %s" % (postcode, rng.choice(['AB', 'KL', 'XZ'])),
        'city': city, 'country': 'NL',
        'vat_number': None if consumer else 'NL%09dB01' % rng.randrange(
            10 ** 9),
        'coc_number': None if consumer else '%08d' % rng.randrange(10 ** 8),
        }


def _batch(rng, number, today):
    debtors = [_debtor(rng, number, i) for i in range(30)]
    items = []
    for index in range(200):
        debtor = rng.choice(debtors)
        # Due dates from 80 days ago to 30 days ahead: every step holds items.
        due = today + datetime.timedelta(days=rng.randrange(-80, 30))
        amount = Decimal(rng.randrange(1500, 450000)) / 100
        items.append({
                'external_id': 'F%d-%05d' % (2026 + number, index),
                'debtor': debtor['external_id'],
                'number': '%d-%05d' % (2026, index + 1 + 1000 * number),
                'description': rng.choice(["Broodleveranties", "Onderhoud",
                        "Installatie CV-ketel", "Catering", "Materialen"]),
                'invoice_date': (due - datetime.timedelta(days=30)
                    ).isoformat(),
                'due_date': due.isoformat(), 'currency': 'EUR',
                'amount': str(amount), 'open_amount': str(amount),
                })
    return {'debtors': debtors, 'items': items, 'complete': True}


def _pauses(pool, administration, today):
    Pause = pool.get('payt.pause')
    Item = pool.get('payt.item')
    Debtor = pool.get('payt.debtor')
    items = Item.search([('administration', '=', administration.id)],
        limit=3, order=[('due_date', 'ASC')])
    Pause.hold(items[:1], 'pause',
        "Debiteur betwist de factuur, in overleg met verkoop",
        end_date=today + datetime.timedelta(days=14))
    Pause.hold(items[1:2], 'stop', "Faillissement aangevraagd")
    debtor = Debtor.search([('administration', '=', administration.id)],
        limit=1)
    Pause.hold(debtor, 'pause', "Betalingsregeling in voorbereiding")


def _payments(pool, administration, rng, today):
    "A second import in which a tenth of the items got paid."
    Item = pool.get('payt.item')
    items = Item.search([('administration', '=', administration.id),
            ('state', '=', 'open')])
    paid = rng.sample(items, len(items) // 10)
    pool.get('payt.administration').import_batch(administration.id, {
            'items': [{'external_id': i.external_id,
                    'debtor': i.debtor.external_id,
                    'due_date': i.due_date.isoformat(),
                    'amount': str(i.amount), 'open_amount': '0'}
                for i in paid],
            'payments': [{'external_id': 'BANK-%s' % i.external_id,
                    'item': i.external_id, 'date': today.isoformat(),
                    'amount': str(i.amount)} for i in paid]})
