"""Deterministic synthetic data for the benchmark.

Open items get due dates spread from 10 days in the future to 59 days overdue
so that every step of the default flow (-3, +7, +14, +21, +38 days) receives
items on the run date, and some are not due yet.
"""
import datetime
import random

OVERDUE_DAYS = range(-10, 60)  # days past the due date on the run date


def administration_shares(total, administrations):
    "total split as evenly as possible over the administrations."
    base, rest = divmod(total, administrations)
    return [base + (1 if i < rest else 0) for i in range(administrations)]


def batches(items, debtors, administrations, run_date, seed=42):
    "One batch (debtors + items) per administration."
    rng = random.Random(seed)
    result = []
    debtor_shares = administration_shares(debtors, administrations)
    item_shares = administration_shares(items, administrations)
    for a, (n_debtors, n_items) in enumerate(zip(debtor_shares, item_shares)):
        debtor_records = [{
                'external_id': 'D%d-%05d' % (a, d),
                'name': 'Debtor %d-%05d BV' % (a, d),
                'kind': 'consumer' if d % 3 == 0 else 'business',
                'email': 'ap-%d-%d@debtor.example' % (a, d),
                'language': 'en' if d % 5 == 0 else 'nl',
                'city': 'Utrecht', 'country': 'NL',
                } for d in range(n_debtors)]
        item_records = []
        for i in range(n_items):
            overdue = rng.choice(OVERDUE_DAYS)
            due = run_date - datetime.timedelta(days=overdue)
            cents = rng.randrange(1000, 500000)
            amount = '%d.%02d' % divmod(cents, 100)
            # One in twenty partly paid.
            open_cents = cents // 2 if i % 20 == 0 else cents
            item_records.append({
                    'external_id': 'F%d-%07d' % (a, i),
                    'debtor': 'D%d-%05d' % (a, rng.randrange(n_debtors)),
                    'number': '%d-%07d' % (a, i),
                    'description': 'Invoice %d' % i,
                    'invoice_date': (due - datetime.timedelta(days=30)
                        ).isoformat(),
                    'due_date': due.isoformat(),
                    'currency': 'EUR',
                    'amount': amount,
                    'open_amount': '%d.%02d' % divmod(open_cents, 100),
                    })
        result.append({'debtors': debtor_records, 'items': item_records})
    return result
