# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Email leaves through Tryton's SMTP setting, to a real SMTP server."""
import email
import email.policy
import re
import socket
import unittest
from unittest.mock import patch

from aiosmtpd.controller import Controller

from trytond import config
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .tools import TODAY, create_administration, days, debtor, item


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class Inbox:
    "An aiosmtpd handler keeping every message it receives."

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            (envelope.rcpt_tos, email.message_from_bytes(
                envelope.content, policy=email.policy.default)))
        return '250 OK'


class EmailTestCase(unittest.TestCase):
    "Sending the run's emails"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')
        cls.inbox = Inbox()
        cls.smtp = Controller(cls.inbox, hostname='127.0.0.1',
            port=free_port())
        cls.smtp.start()
        cls.previous = config.get('email', 'uri')
        config.set('email', 'uri', 'smtp://127.0.0.1:%s' % cls.smtp.port)
        config.set('email', 'from', 'debiteuren@payt.example')

    @classmethod
    def tearDownClass(cls):
        cls.smtp.stop()
        config.set('email', 'uri', cls.previous)
        super().tearDownClass()

    @with_transaction()
    def test_run_emails_arrive_once_in_the_debtors_language(self):
        """Each email arrives rendered, handed over before it is recorded
        as sent: a lost commit sends it again under its Message-ID"""
        pool = Pool()
        Administration = pool.get('payt.administration')
        Communication = pool.get('payt.communication')
        Run = pool.get('payt.run')
        transaction = Transaction()
        administration = create_administration("Mail Test BV")
        Administration.import_batch(administration.id, {
                'debtors': [debtor('NL'), debtor('EN', language='en'),
                    debtor('NOMAIL', email=None)],
                'items': [item('A', 'NL', TODAY - days(7)),
                    item('B', 'EN', TODAY - days(7)),
                    item('C', 'NOMAIL', TODAY - days(7))]})
        Run.execute(administration, TODAY)
        transaction.commit()
        self.inbox.messages.clear()
        try:
            # The sender dies after the mail server accepted the emails,
            # before it recorded them as sent.
            with patch.object(Communication, 'record',
                    classmethod(lambda cls, job, receipt, error: 0)):
                Communication.send_pending(administration)
            transaction.commit()
            self.assertEqual(len(self.inbox.messages), 2,
                "handed to the mail server before recorded as sent")
            first = sorted(m['Message-ID'] for r, m in self.inbox.messages)
            # Nothing is lost: the same emails go again, under the same
            # Message-IDs, for the receiver to recognise.
            self.assertEqual(Communication.send_pending(administration), 2)
            transaction.commit()
            again = self.inbox.messages[2:]
            self.assertEqual(sorted(m['Message-ID'] for r, m in again), first)
            by_rcpt = {tuple(r): m for r, m in again}
            self.assertEqual(set(by_rcpt), {
                    ('debtor-NL@example.com',), ('debtor-EN@example.com',)})
            dutch = by_rcpt[('debtor-NL@example.com',)]
            self.assertEqual(dutch['Subject'],
                'Eerste herinnering factuur F-A')
            self.assertIn('Mail Test BV', dutch['From'])
            self.assertIn('nog open voor EUR 121,00',
                dutch.get_content())
            self.assertIn(
                'De vervaldatum was %s.' % (TODAY - days(7)).strftime(
                    '%d-%m-%Y'), dutch.get_content())
            english = by_rcpt[('debtor-EN@example.com',)]
            self.assertEqual(english['Subject'],
                'First reminder invoice F-B')
            failed, = Communication.search([
                    ('item.administration', '=', administration.id),
                    ('state', '=', 'failed')])
            self.assertEqual(failed.error, "The debtor has no email address")
            # Recorded as sent, nothing goes again.
            self.assertEqual(Communication.send_pending(administration), 0)
            transaction.commit()
            self.assertEqual(len(self.inbox.messages), 4)
        finally:
            Administration.delete([Administration(administration.id)])
            transaction.commit()

    @with_transaction()
    def test_portal_link_in_the_mail_not_in_the_stored_body(self):
        """Each debtor's email carries a working portal link to that
        debtor's own portal (a batch's links are made together); the copy
        kept on the communication (readable by the back office) does not"""
        pool = Pool()
        Administration = pool.get('payt.administration')
        Communication = pool.get('payt.communication')
        Template = pool.get('payt.flow.step.template')
        Link = pool.get('payt.portal.link')
        transaction = Transaction()
        administration = create_administration("Link Test BV")
        templates = [t for s in administration.flow.steps
            for t in s.templates]
        for template in templates:
            template.body += "\n${portal_url}\n"
        Template.save(templates)
        Administration.import_batch(administration.id, {
                'debtors': [debtor('NL'), debtor('EN', language='en'),
                    debtor('BE')],
                'items': [item('A', 'NL', TODAY - days(7)),
                    item('B', 'EN', TODAY - days(7)),
                    item('C', 'BE', TODAY - days(7))]})
        pool.get('payt.run').execute(administration, TODAY)
        self.inbox.messages.clear()
        self.assertEqual(Communication.send_pending(administration), 3)
        transaction.commit()
        try:
            for (recipient,), mail in self.inbox.messages:
                token = re.search(r'/payt/portal/([A-Za-z0-9_-]{43})',
                    mail.get_content()).group(1)
                link = Link.find(token)
                self.assertTrue(link, "the mailed link works")
                self.assertEqual(link.debtor.email, recipient,
                    "the link opens the portal of the debtor mailed")
            communication = Communication.search([
                    ('item.administration', '=', administration.id),
                    ('recipient', '=', recipient)])[0]
            self.assertNotIn(token, communication.body)
            self.assertIn('/payt/portal/[personal-link]', communication.body)
            self.assertIsNone(re.search(r'[A-Za-z0-9_-]{43}',
                    communication.body))
            # The Message-ID names nothing but a random reference.
            self.assertEqual(mail['Message-ID'], communication.message_id)
            self.assertRegex(communication.message_id,
                r'^<[A-Za-z0-9_-]{24,32}@payt\.example>$')
        finally:
            Administration.delete([Administration(administration.id)])
            transaction.commit()
