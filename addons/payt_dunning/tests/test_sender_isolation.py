# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""One bad record fails alone; each administration's daily run is a
transaction of its own and on record, failed or not."""
import unittest
from unittest.mock import patch

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import with_transaction
from trytond.transaction import Transaction

from .test_case_delivery import Outbound
from .tools import TODAY, create_administration, days, debtor, item


class SenderIsolationTestCase(Outbound, unittest.TestCase):
    "Failures isolated"

    def _administration(self, name, prefix):
        Administration = Pool().get('payt.administration')
        administration = create_administration(name, user=False)
        Administration.import_batch(administration.id, {
                'debtors': [debtor(prefix + '1'), debtor(prefix + '2')],
                'items': [item(prefix + '-a', prefix + '1', TODAY - days(7)),
                    item(prefix + '-b', prefix + '2', TODAY - days(7))]})
        return administration

    def _cleanup(self, administrations):
        Administration = Pool().get('payt.administration')
        Administration.delete(Administration.browse(
                [a.id for a in administrations]))
        Transaction().commit()

    @with_transaction()
    def test_header_breaking_invoice_number_fails_alone(self):
        "An invoice number with CR/LF fails its email alone, with a reason"
        pool = Pool()
        Communication = pool.get('payt.communication')
        Attention = pool.get('payt.attention')
        Item = pool.get('payt.item')
        Run = pool.get('payt.run')
        transaction = Transaction()
        administration = self._administration("Kopregel BV", 'H')
        bad, = Item.search([('external_id', '=', 'H-a')])
        # Stored before the importer refused control characters.
        table = Item.__table__()
        transaction.connection.cursor().execute(*table.update(
                [table.number], ['F-1\r\nBcc: all@example.com'],
                where=table.id == bad.id))
        self.inbox.messages.clear()
        try:
            Run.cron_daily()
            failed, = Communication.search([
                    ('item.administration', '=', administration.id),
                    ('state', '=', 'failed')])
            self.assertEqual(failed.item, bad)
            self.assertIn("Cannot build the email", failed.error)
            attention, = Attention.search([
                    ('administration', '=', administration.id),
                    ('item', '=', bad.id)])
            self.assertEqual(attention.reason, 'email_undeliverable')
            sent, = Communication.search([
                    ('item.administration', '=', administration.id),
                    ('state', '=', 'sent')])
            self.assertEqual([r for r, _ in self.inbox.messages],
                [['debtor-H2@example.com']])
            run, = Run.search([('administration', '=', administration.id)])
            self.assertEqual(run.state, 'done')
        finally:
            self._cleanup([administration])

    @with_transaction()
    def test_each_administration_runs_and_is_recorded_alone(self):
        "A failing administration is recorded as failed; the others run"
        pool = Pool()
        Communication = pool.get('payt.communication')
        Run = pool.get('payt.run')
        good = self._administration("Goed BV", 'G')
        bad = self._administration("Fout BV", 'F')
        execute = Run.execute.__func__

        def failing(cls, administration, date, dry_run=False):
            result = execute(cls, administration, date, dry_run=dry_run)
            if administration.id == bad.id:
                raise ValueError("flow broken")
            return result
        try:
            with patch.object(Run, 'execute', classmethod(failing)):
                Run.cron_daily()
            good_run, = Run.search([('administration', '=', good.id)])
            self.assertEqual(good_run.state, 'done')
            failed, = Run.search([('administration', '=', bad.id),
                    ('state', '=', 'failed')])
            self.assertIn("flow broken", failed.summary)
            self.assertEqual(Communication.search_count([
                        ('item.administration', '=', good.id),
                        ('state', '=', 'sent')]), 2)
            if backend.name == 'postgresql':
                # The failed run's work is rolled back. (Tryton's shared
                # in-memory SQLite connection autocommits after a commit.)
                self.assertEqual(Run.search_count([
                            ('administration', '=', bad.id)]), 1)
                self.assertEqual(Communication.search_count([
                            ('item.administration', '=', bad.id)]), 0)
        finally:
            self._cleanup([good, bad])
