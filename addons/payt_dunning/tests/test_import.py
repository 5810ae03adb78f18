# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The bulk entry point: idempotent upsert, closing, whole-batch rejection."""
import unittest
from decimal import Decimal

from trytond import backend
from trytond.exceptions import UserError
from trytond.pool import Pool
from trytond.transaction import Transaction
from trytond.tests.test_tryton import activate_module, with_transaction

from .tools import (
    TODAY, create_administration, days, debtor, item, items_by_external_id)


class ImportTestCase(unittest.TestCase):
    "The bulk entry point"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')

    def _import(self, administration, batch):
        Administration = Pool().get('payt.administration')
        return Administration.import_batch(administration.id, batch)

    def _counts(self):
        pool = Pool()
        return tuple(pool.get(m).search_count([]) for m in (
                'payt.debtor', 'payt.item', 'payt.payment', 'payt.event'))

    def _batch(self):
        return {
            'debtors': [debtor('D1'), debtor('D2', 'consumer',
                    language='en', country='nl')],
            'items': [
                item('I1', 'D1', TODAY - days(3)),
                item('I2', 'D2', TODAY + days(10), amount='99.95'),
                ],
            'payments': [{'external_id': 'P1', 'item': 'I1',
                    'date': TODAY.isoformat(), 'amount': '21.00'}],
            }

    @unittest.skipIf(backend.name != 'postgresql',
        "planner statistics are PostgreSQL's")
    @with_transaction()
    def test_a_first_sync_keeps_the_planner_informed(self):
        "A batch that fills an empty table leaves it analysed"
        # Without it every next batch of a first sync looked its external
        # ids up by sequential scans: 0.4 s for the first batch, 15 s for
        # the 50th (bench_sync, 100,000 items).
        administration = create_administration()
        self._import(administration, {
                'debtors': [debtor('D%d' % i) for i in range(10)],
                'items': [item('I%d' % i, 'D%d' % (i % 10), TODAY)
                    for i in range(500)]})
        cursor = Transaction().connection.cursor()
        # Column statistics: without them the planner took "administration
        # = X" for selective and scanned all of the administration's items.
        cursor.execute("SELECT count(*) FROM pg_stats "
            "WHERE tablename = 'payt_item' AND attname = 'external_id'")
        self.assertEqual(cursor.fetchone()[0], 1)

    @with_transaction()
    def test_import_is_idempotent(self):
        "The same batch twice: created once, then nothing changes"
        administration = create_administration()
        first = self._import(administration, self._batch())
        self.assertEqual(
            (first['debtors_created'], first['items_created'],
                first['payments_created']), (2, 2, 1))
        counts = self._counts()
        second = self._import(administration, self._batch())
        self.assertEqual(set(second.values()), {0})
        self.assertEqual(self._counts(), counts)
        found = items_by_external_id(administration)
        self.assertEqual(found['I2'].amount, Decimal('99.95'))
        self.assertEqual(found['I2'].debtor.kind, 'consumer')
        self.assertEqual(found['I2'].debtor.country, 'NL')
        self.assertEqual(found['I1'].currency.code, 'EUR')
        self.assertEqual([e.kind for e in found['I1'].events],
            ['imported', 'payment'])

    @with_transaction()
    def test_changes_update_and_zero_open_amount_closes(self):
        "A changed item is updated; an open amount of zero closes it as paid"
        administration = create_administration()
        self._import(administration, self._batch())
        batch = self._batch()
        batch['debtors'][0]['email'] = 'new@example.com'
        batch['items'][0]['open_amount'] = '0'
        batch['items'][1]['open_amount'] = '50.00'
        summary = self._import(administration, batch)
        self.assertEqual(summary['debtors_updated'], 1)
        self.assertEqual(summary['items_updated'], 2)
        self.assertEqual(summary['items_closed'], 1)
        found = items_by_external_id(administration)
        self.assertEqual(found['I1'].state, 'paid')
        self.assertEqual(found['I1'].paid_date, TODAY)
        self.assertEqual(found['I2'].open_amount, Decimal('50.00'))
        self.assertEqual(found['I1'].debtor.email, 'new@example.com')
        self.assertEqual(found['I1'].events[-1].kind, 'paid')
        # Open again in the source: reopened here.
        batch['items'][0]['open_amount'] = '121.00'
        summary = self._import(administration, batch)
        self.assertEqual(summary['items_reopened'], 1)
        found = items_by_external_id(administration)
        self.assertEqual(found['I1'].state, 'open')

    @with_transaction()
    def test_items_missing_from_a_complete_list_are_closed(self):
        "A complete batch closes every open item it no longer lists"
        administration = create_administration()
        self._import(administration, self._batch())
        batch = self._batch()
        del batch['items'][0]
        batch['complete'] = True
        summary = self._import(administration, batch)
        self.assertEqual(summary['items_closed'], 1)
        found = items_by_external_id(administration)
        self.assertEqual(found['I1'].state, 'paid')
        self.assertEqual(found['I1'].open_amount, Decimal('0'))
        self.assertEqual(found['I2'].state, 'open')
        # An incremental batch names closed items explicitly.
        summary = self._import(administration, {'closed_items': ['I2']})
        self.assertEqual(summary['items_closed'], 1)
        self.assertEqual(
            items_by_external_id(administration)['I2'].state, 'paid')

    @with_transaction()
    def test_cumulative_payment_is_updated(self):
        "A source reporting the total paid so far updates the payment"
        Payment = Pool().get('payt.payment')
        administration = create_administration()
        self._import(administration, self._batch())
        batch = self._batch()
        batch['payments'][0]['amount'] = '60.00'
        summary = self._import(administration, batch)
        self.assertEqual(summary['payments_updated'], 1)
        payment, = Payment.search([('external_id', '=', 'P1')])
        self.assertEqual(payment.amount, Decimal('60.00'))

    def _assert_rejected(self, administration, batch, *fragments):
        counts = self._counts()
        with self.assertRaises(UserError) as context:
            self._import(administration, batch)
        message = context.exception.message
        self.assertIn("nothing was written", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        self.assertEqual(self._counts(), counts)
        return message

    @with_transaction()
    def test_invalid_record_rejects_the_whole_batch(self):
        "One bad record rejects the batch, names record and field"
        administration = create_administration()
        self._import(administration, self._batch())
        cases = [
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-02-30',
                    'amount': '1', 'open_amount': '1'},
                ['item "X", field "due_date"', "must be a date"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': 12.5, 'open_amount': '1'},
                ['item "X", field "amount"', "decimal string, got float"]),
            ({'external_id': 'X', 'debtor': 'NOPE', 'due_date': '2026-01-01',
                    'amount': '1', 'open_amount': '1'},
                ['item "X", field "debtor"', "unknown debtor"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': '1.001', 'open_amount': '1'},
                ['field "amount"', "more than 2 decimals"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': 'NaN', 'open_amount': '1'},
                ['field "amount"', "out of range"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': '1e20', 'open_amount': '1'},
                ['field "amount"', "out of range"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': '10', 'open_amount': '11'},
                ['field "open_amount"', "more than the amount"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': '1', 'open_amount': '1', 'currency': 'XXX'},
                ['field "currency"', "unknown currency"]),
            ({'external_id': 'X', 'debtor': 'D1', 'due_date': '2026-01-01',
                    'amount': '1', 'open_amount': '1',
                    'description': 'x' * 100000},
                ['field "description"', "100000 characters long"]),
            ({'external_id': 'X\x00Y', 'debtor': 'D1',
                    'due_date': '2026-01-01', 'amount': '1',
                    'open_amount': '1'},
                ['field "external_id"', "control characters"]),
            ({'external_id': ['X'], 'debtor': 'D1'},
                ['field "external_id"', "must be text, got list"]),
            ]
        for bad, fragments in cases:
            with self.subTest(bad=str(bad)[:60]):
                batch = self._batch()
                batch['items'].append(bad)
                # The good records before it are not written either.
                batch['items'][0]['open_amount'] = '1.00'
                self._assert_rejected(administration, batch, *fragments)
        self.assertEqual(
            items_by_external_id(administration)['I1'].open_amount,
            Decimal('121.00'))

    @with_transaction()
    def test_duplicates_and_wrong_shapes_are_rejected(self):
        "Duplicate ids, wrong types and bad debtors are refused as a whole"
        administration = create_administration()
        batch = self._batch()
        batch['items'].append(dict(batch['items'][0]))
        self._assert_rejected(administration, batch,
            'item "I1", field "external_id"', "appears twice")
        batch = self._batch()
        batch['debtors'].append(debtor('D3', kind='alien'))
        self._assert_rejected(administration, batch,
            'debtor "D3", field "kind"')
        batch = self._batch()
        batch['debtors'][0]['email'] = 'not an email'
        self._assert_rejected(administration, batch, 'field "email"')
        batch = self._batch()
        batch['items'] = {'I1': 'x'}
        self._assert_rejected(administration, batch, "must be a list")
        batch = self._batch()
        batch['items'].append('just a string')
        self._assert_rejected(administration, batch, "must be a mapping")
        with self.assertRaises(UserError) as context:
            self._import(administration, ['not', 'a', 'dict'])
        self.assertIn("must be a mapping", context.exception.message)
        batch = self._batch()
        batch['debtors'][0]['name'] = ''
        self._assert_rejected(administration, batch,
            'debtor "D1", field "name": is required')

    @with_transaction()
    def test_hostile_strings_are_stored_verbatim(self):
        "Markup and SQL in names are data, stored and returned unchanged"
        administration = create_administration()
        hostile = ["<script>alert('x')</script>",
            "Robert'); DROP TABLE payt_item;--", "Ünïcødé ✓ 中文",
            "${debtor_name} %(x)s {0}"]
        batch = {
            'debtors': [debtor('H%d' % i, name=name)
                for i, name in enumerate(hostile)],
            'items': [item('HI%d' % i, 'H%d' % i, TODAY, description=name)
                for i, name in enumerate(hostile)],
            }
        self._import(administration, batch)
        found = items_by_external_id(administration)
        self.assertEqual(
            [found['HI%d' % i].debtor.name for i in range(len(hostile))],
            hostile)
        self.assertEqual(
            [found['HI%d' % i].description for i in range(len(hostile))],
            hostile)

    @with_transaction()
    def test_booking_errors_raise_attention(self):
        "Negative open items and payments without invoice need a look"
        Attention = Pool().get('payt.attention')
        administration = create_administration()
        batch = self._batch()
        batch['items'].append(item('CN1', 'D1', TODAY, amount='-10.00'))
        batch['payments'].append({'external_id': 'P9', 'item': 'UNKNOWN',
                'date': TODAY.isoformat(), 'amount': '5.00'})
        self._import(administration, batch)
        reasons = sorted(a.description for a in Attention.search(
                [('reason', '=', 'booking_error')]))
        self.assertEqual(len(reasons), 2)
        self.assertIn("CN1", reasons[0])
        self.assertIn("UNKNOWN", reasons[1])
