# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Case letters leave through the outbound path: print and mail, or SMTP
with the PDF; the 14-day term runs from the day the letter left."""
import datetime
import unittest

from aiosmtpd.controller import Controller

from trytond import config
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from payt_hub.simulators.printmail import API_KEY, PrintMailSimulator

from ..providers import SECTION
from .test_email import Inbox, free_port
from .tools import TODAY, create_administration, days, debtor, item


class Outbound:
    """An SMTP catcher and the print-and-mail simulator, configured as the
    module's outbound path for a test class (the case letters of a run
    leave through them)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')
        cls.start_outbound()

    @classmethod
    def tearDownClass(cls):
        cls.stop_outbound()
        super().tearDownClass()

    @classmethod
    def start_outbound(cls):
        cls.inbox = Inbox()
        cls.smtp = Controller(cls.inbox, hostname='127.0.0.1',
            port=free_port())
        cls.smtp.start()
        cls.printmail = PrintMailSimulator(events=False).start()
        cls.previous_uri = config.get('email', 'uri')
        config.set('email', 'uri', 'smtp://127.0.0.1:%s' % cls.smtp.port)
        cls.own_section = not config.has_section(SECTION)
        if cls.own_section:
            config.add_section(SECTION)
        config.set(SECTION, 'printmail_url', cls.printmail.url)
        config.set(SECTION, 'printmail_key', API_KEY)

    @classmethod
    def stop_outbound(cls):
        cls.smtp.stop()
        cls.printmail.stop()
        config.set('email', 'uri', cls.previous_uri)
        if cls.own_section:
            config.remove_section(SECTION)

    def letters_at_printmail(self):
        with self.printmail.lock:
            return list(self.printmail.letters.values())


class CaseDeliveryTestCase(Outbound, unittest.TestCase):
    "Case letters delivered"

    def _case(self, **address):
        "A consumer case with its 14-day letter due today."
        pool = Pool()
        Administration = pool.get('payt.administration')
        Case = pool.get('payt.case')
        Item = pool.get('payt.item')
        administration = create_administration("Brieven BV")
        Administration.import_batch(administration.id, {
                'debtors': [debtor('C1', 'consumer', **address)],
                'items': [item('c-1', 'C1', TODAY - days(40), '300.00')]})
        item_, = Item.search([('external_id', '=', 'c-1')])
        case, = Case.open_for_items([item_], TODAY)
        return administration, case

    @with_transaction()
    def test_posted_letter_reaches_print_and_mail(self):
        "The 14-day letter goes to print and mail with its PDF"
        Case = Pool().get('payt.case')
        _, case = self._case(street="Dorpsstraat 1", postal_code="1234 AB",
            city="Utrecht")
        Case.escalate([case])
        letter, = Case(case.id).letters
        self.assertEqual((letter.delivery, letter.provider),
            ('sent', 'printmail'))
        sent, = [l for l in self.letters_at_printmail()
            if l['reference'] == letter.delivery_key]
        self.assertEqual(sent['id'], letter.provider_id)
        self.assertEqual(sent['recipient']['city'], "Utrecht")
        self.assertTrue(sent['pdf'].startswith(b'%PDF'))
        self.assertEqual(letter.date, TODAY)
        self.assertGreater(letter.receipt_date, TODAY)

    @with_transaction()
    def test_emailed_letter_reaches_the_mailbox(self):
        "Without a postal address the letter is emailed, PDF attached"
        pool = Pool()
        Case = pool.get('payt.case')
        Administration = pool.get('payt.administration')
        transaction = Transaction()
        administration, case = self._case()
        self.inbox.messages.clear()
        Case.escalate([case])
        letter, = Case(case.id).letters
        self.assertEqual((letter.delivery, letter.provider, letter.channel),
            ('sent', 'smtp', 'email'))
        self.assertEqual(letter.receipt_date, TODAY)
        transaction.commit()
        try:
            (rcpt, message), = self.inbox.messages
            self.assertEqual(rcpt, ['debtor-C1@example.com'])
            self.assertEqual(message['Message-ID'], letter.provider_id)
            pdf, = [p for p in message.iter_attachments()]
            self.assertEqual(pdf.get_filename(), letter.pdf_name)
            self.assertTrue(pdf.get_content().startswith(b'%PDF'))
        finally:
            Administration.delete([Administration(administration.id)])
            transaction.commit()

    @with_transaction()
    def test_refused_letter_waits_and_its_term_runs_from_sending(self):
        "A letter the provider refused is not sent, blocks costs, and later"
        " runs its term from the day it left"
        pool = Pool()
        Case = pool.get('payt.case')
        Event = pool.get('payt.event')
        Communication = pool.get('payt.communication')
        administration, case = self._case(street="Dorpsstraat 1",
            city="Utrecht")
        config.set(SECTION, 'printmail_url', 'http://127.0.0.1:%s' % (
                free_port()))
        try:
            Case.escalate([case])
        finally:
            config.set(SECTION, 'printmail_url', self.printmail.url)
        letter, = Case(case.id).letters
        self.assertEqual(letter.delivery, 'pending')
        self.assertIn('unreachable', letter.delivery_error)
        self.assertEqual(Event.search_count([
                    ('item', 'in', [i.id for i in case.items]),
                    ('kind', '=', 'sent')]), 0)
        case = Case(case.id)
        self.assertIsNone(case.fourteen_day_letter())
        self.assertEqual(case.costs_problem(TODAY + days(60))[0],
            'payt_dunning.msg_case_costs_no_letter')
        self.assertIsNone(case._due(
                pool.get('payt.case.configuration').of(administration),
                TODAY + days(60)))
        # The provider is up again once its back-off has passed.
        Backoff = pool.get('payt.channel.backoff')
        backoff, = Backoff.search([('provider', '=', 'printmail')])
        self.assertGreater(backoff.next_attempt_at, datetime.datetime.now())
        Backoff.write([backoff], {'next_attempt_at': datetime.datetime.now()
                - datetime.timedelta(seconds=1)})
        later = TODAY + days(3)
        with Transaction().set_context(payt_case_date=later):
            self.assertEqual(Communication.send_pending(administration), 1)
        letter, = Case(case.id).letters
        self.assertEqual((letter.delivery, letter.date), ('sent', later))
        self.assertGreater(letter.receipt_date, later)
        self.assertGreater(letter.costs_chargeable_from,
            letter.receipt_date + days(13))
        self.assertEqual(Case(case.id).fourteen_day_letter(), letter)
        self.assertEqual(Event.search_count([
                    ('item', 'in', [i.id for i in case.items]),
                    ('kind', '=', 'sent')]), 1)

    @with_transaction()
    def test_self_posted_letter_joins_the_batch(self):
        "Posting in-house: the letter is in the day's batch, sent once"
        " downloaded"
        pool = Pool()
        Case = pool.get('payt.case')
        Communication = pool.get('payt.communication')
        administration, case = self._case(street="Dorpsstraat 1",
            city="Utrecht")
        administration.letters_self_posted = True
        administration.save()
        Case.escalate([case])
        letter, = Case(case.id).letters
        self.assertEqual((letter.delivery, letter.provider),
            ('queued', 'self'))
        self.assertEqual(self.letters_at_printmail() and [
                l for l in self.letters_at_printmail()
                if l['reference'] == letter.delivery_key], [])
        count, pdf = Communication.letter_batch(administration, TODAY)
        self.assertEqual(count, 1)
        self.assertTrue(pdf.startswith(b'%PDF'))
        letter, = Case(case.id).letters
        self.assertEqual(letter.delivery, 'sent')
