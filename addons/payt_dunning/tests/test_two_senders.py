# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Two senders at once neither crash nor send a message twice."""
import threading
import unittest

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME
from trytond.transaction import Transaction

from ..channel import run_sender
from .test_case_delivery import Outbound
from .tools import TODAY, create_administration, days, debtor, item

DEBTORS = 30


class TwoSendersTestCase(Outbound, unittest.TestCase):
    "Concurrent senders"

    def test_two_senders_each_message_once(self):
        "Two senders over the same pending emails: each arrives once"
        with Transaction().start(DB_NAME, 0) as transaction:
            pool = Pool()
            Administration = pool.get('payt.administration')
            administration = create_administration("Twee Zenders BV",
                user=False)
            Administration.import_batch(administration.id, {
                    'debtors': [debtor('S%s' % n) for n in range(DEBTORS)],
                    'items': [item('s-%s' % n, 'S%s' % n, TODAY - days(7))
                        for n in range(DEBTORS)]})
            pool.get('payt.run').execute(administration, TODAY)
            transaction.commit()
        self.inbox.messages.clear()
        errors, counts = [], []

        def sender():
            try:
                counts.append(run_sender(DB_NAME, administration.id,
                        batch_size=4))
            except Exception as exception:
                errors.append(exception)
        try:
            if backend.name == 'postgresql':
                senders = [threading.Thread(target=sender) for _ in range(2)]
                for thread in senders:
                    thread.start()
                for thread in senders:
                    thread.join()
            else:
                # SQLite in memory is one database per thread: one sender
                # after the other.
                sender()
                sender()
            self.assertEqual(errors, [])
            self.assertEqual(sum(counts), DEBTORS)
            recipients = [tuple(r) for r, _ in self.inbox.messages]
            self.assertEqual(len(recipients), DEBTORS)
            self.assertEqual(len(set(recipients)), DEBTORS)
        finally:
            with Transaction().start(DB_NAME, 0) as transaction:
                pool = Pool()
                Communication = pool.get('payt.communication')
                Administration = pool.get('payt.administration')
                sent = Communication.search_count([
                        ('item.administration', '=', administration.id),
                        ('state', '=', 'sent')])
                Administration.delete([Administration(administration.id)])
                transaction.commit()
        self.assertEqual(sent, DEBTORS)
