# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""A provider that is down backs off; the other channels go on."""
import datetime
import unittest

from trytond import config
from trytond.pool import Pool
from trytond.tests.test_tryton import with_transaction

from ..providers import SECTION
from .test_case_delivery import Outbound
from .test_email import free_port
from .tools import TODAY, create_administration, days, debtor, item


class BackoffTestCase(Outbound, unittest.TestCase):
    "Provider back-off"

    def _administration(self):
        "First reminders by letter and by email."
        pool = Pool()
        Administration = pool.get('payt.administration')
        Step = pool.get('payt.flow.step')
        administration = create_administration("Wachtrij BV")
        first, = [s for s in administration.flow.steps if s.lead_days == 7]
        Step.write([first], {'channels': ['letter', 'email']})
        Administration.import_batch(administration.id, {
                'debtors': [debtor('P1', street="Dorpsstraat 1",
                        city="Utrecht")],
                'items': [item('p-1', 'P1', TODAY - days(7))]})
        pool.get('payt.run').execute(administration, TODAY)
        return administration

    def _state(self, administration, channel):
        Communication = Pool().get('payt.communication')
        communication, = Communication.search([
                ('item.administration', '=', administration.id),
                ('channel', '=', channel)])
        return communication.state

    @with_transaction()
    def test_refusing_provider_backs_off_while_email_goes(self):
        "Print and mail refusing: letters wait their back-off, email goes"
        pool = Pool()
        Communication = pool.get('payt.communication')
        Backoff = pool.get('payt.channel.backoff')
        administration = self._administration()
        config.set(SECTION, 'printmail_url', 'http://127.0.0.1:%s' % (
                free_port()))
        try:
            self.assertEqual(Communication.send_pending(administration), 1)
            self.assertEqual(self._state(administration, 'email'), 'sent')
            self.assertEqual(self._state(administration, 'letter'),
                'pending')
            backoff, = Backoff.search([('provider', '=', 'printmail')])
            self.assertEqual(backoff.failures, 1)
            self.assertIn('unreachable', backoff.error)
            waited = backoff.next_attempt_at - datetime.datetime.now()
            self.assertGreater(waited, datetime.timedelta(seconds=20))
            # While it waits, no sender takes the letter: no busy loop.
            self.assertEqual(Communication.search(
                    Communication._pending_domain(administration)), [])
            self.assertEqual(Communication.send_pending(administration), 0)
            self.assertEqual(Backoff(backoff.id).failures, 1)
            # Still down after the wait: twice as long.
            Backoff.write([backoff], {'next_attempt_at':
                    datetime.datetime.now() - datetime.timedelta(seconds=1)})
            Communication.send_pending(administration)
            backoff = Backoff(backoff.id)
            self.assertEqual(backoff.failures, 2)
            self.assertGreater(
                backoff.next_attempt_at - datetime.datetime.now(),
                datetime.timedelta(seconds=50))
        finally:
            config.set(SECTION, 'printmail_url', self.printmail.url)
        # Up again after the wait: the letter goes, the back-off is gone.
        Backoff.write([backoff], {'next_attempt_at':
                datetime.datetime.now() - datetime.timedelta(seconds=1)})
        self.assertEqual(Communication.send_pending(administration), 1)
        self.assertEqual(self._state(administration, 'letter'), 'queued')
        self.assertEqual(Backoff.search([]), [])
