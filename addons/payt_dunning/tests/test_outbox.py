# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""One way out: every kind of message to a debtor is a row of the
communication outbox and reaches its provider (here the SMTP catcher),
with opt-outs, bounces and delivery status; no module but the email
provider talks to SMTP."""
import pathlib
import re
import unittest

from trytond.pool import Pool
from trytond.tests.test_tryton import with_transaction
from trytond.transaction import Transaction

from .test_case_delivery import Outbound
from .tools import TODAY, create_administration, days, debtor, item

MODULE = pathlib.Path(__file__).resolve().parent.parent
# Talking to a mail server: only the email provider may.
SENDING = re.compile(r'\bsmtplib\b|\bsendmail\b|send_message|\bSMTP(_SSL)?\('
    r'|\bmail_debtor\b')
PROVIDERS = {'email_provider.py'}


class OutboxTestCase(Outbound, unittest.TestCase):
    "Every message to a debtor leaves through the outbox"

    def _administration(self, name):
        Administration = Pool().get('payt.administration')
        administration = create_administration(name)
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1', language='en')],
                'items': [item('I1', 'D1', TODAY - days(10)),
                    item('I2', 'D1', TODAY - days(5))]})
        items = Pool().get('payt.item').search([
                ('administration', '=', administration.id)],
            order=[('external_id', 'ASC')])
        return administration, items

    def _delivered(self, administration, kind):
        "The outbox rows of `kind`, once committed, and what arrived."
        Communication = Pool().get('payt.communication')
        Transaction().commit()
        rows = Communication.search([
                ('item.administration', '=', administration.id),
                ('kind', '=', kind)])
        return rows, {m['Message-ID']: m for _, m in self.inbox.messages}

    def _cleanup(self, administration):
        pool = Pool()
        Administration = pool.get('payt.administration')
        # Plans hold their items: gone first, by SQL (a running plan is
        # not deleted through the ORM).
        Plan = pool.get('payt.plan')
        plans = [p.id for p in Plan.search([
                    ('administration', '=', administration.id)])]
        cursor = Transaction().connection.cursor()
        for name in ('payt.plan.term', 'payt.plan.line'):
            table = pool.get(name).__table__()
            cursor.execute(*table.delete(where=table.plan.in_(plans or [-1])))
        plan = Plan.__table__()
        cursor.execute(*plan.delete(where=plan.id.in_(plans or [-1])))
        Administration.delete([Administration(administration.id)])
        Transaction().commit()

    def _plan(self, items, **values):
        Plan = Pool().get('payt.plan')
        return Plan.create_for(items[0].debtor, items, [], 2,
            TODAY + days(5), **values)

    @with_transaction()
    def test_plan_schedule_reaches_the_mailbox(self):
        "Starting a plan emails its schedule through the outbox"
        Plan = Pool().get('payt.plan')
        administration, items = self._administration("Schema BV")
        self.inbox.messages.clear()
        plan = self._plan(items)
        Plan.start([plan])
        try:
            (row,), mails = self._delivered(administration, 'plan_schedule')
            self.assertEqual((row.state, row.provider, row.recipient),
                ('sent', 'smtp', 'debtor-D1@example.com'))
            mail = mails[row.message_id]
            self.assertIn('EUR 121.00', mail.get_content())
            self.assertIn('/payt/portal/', mail.get_content())
            # The copy kept holds no working link.
            self.assertIn('[personal-link]', row.body)
            self.assertIsNotNone(Plan(plan.id).schedule_sent)
        finally:
            self._cleanup(administration)

    @with_transaction()
    def test_plan_term_reminder_leaves_with_the_sender(self):
        "A term reminder is created by the run and sent by the sender"
        pool = Pool()
        Plan = pool.get('payt.plan')
        Communication = pool.get('payt.communication')
        Run = pool.get('payt.run')
        administration, items = self._administration("Termijn BV")
        plan = self._plan(items, reminder_days=3)
        Plan.start([plan])
        Transaction().commit()
        self.inbox.messages.clear()
        try:
            Run.execute(administration, TODAY + days(2))
            reminder, = Communication.search([
                    ('item.administration', '=', administration.id),
                    ('kind', '=', 'plan_reminder')])
            self.assertEqual(reminder.state, 'pending')
            Communication.send_pending(administration)
            (row,), mails = self._delivered(administration, 'plan_reminder')
            self.assertEqual(row.state, 'sent')
            self.assertIn('1', mails[row.message_id]['Subject'])
            self.assertEqual(len(self.inbox.messages), 1)
        finally:
            self._cleanup(administration)

    @with_transaction()
    def test_message_notification_reaches_the_mailbox(self):
        "A message to the debtor is emailed through the outbox"
        Message = Pool().get('payt.message')
        administration, items = self._administration("Bericht BV")
        self.inbox.messages.clear()
        message, = Message.create([{'administration': administration.id,
                    'debtor': items[0].debtor.id, 'item': items[0].id,
                    'body': "Your credit note is on its way."}])
        self.assertTrue(message.emailed)
        try:
            (row,), mails = self._delivered(administration, 'message')
            self.assertEqual(row.item, items[0])
            mail = mails[row.message_id]
            self.assertIn("Your credit note is on its way.",
                mail.get_content())
            self.assertIn("about invoice F-I1", mail.get_content())
            kinds = [e.kind for e in items[0].__class__(items[0].id).events]
            self.assertIn('sent', kinds)
        finally:
            self._cleanup(administration)

    @with_transaction()
    def test_portal_plan_request_started_reaches_the_mailbox(self):
        "A plan the debtor asked for in the portal: its schedule is emailed"
        " once started"
        Plan = Pool().get('payt.plan')
        administration, items = self._administration("Portaal BV")
        plan = self._plan(items, requested=True,
            request_note="Two terms please")
        self.inbox.messages.clear()
        Plan.start([plan])
        try:
            (row,), mails = self._delivered(administration, 'plan_schedule')
            self.assertIn(row.message_id, mails)
            self.assertEqual(len(self.inbox.messages), 1)
        finally:
            self._cleanup(administration)

    @with_transaction()
    def test_opted_out_and_bounced_notifications(self):
        "An opted-out debtor gets no notification; a bounce fails one"
        pool = Pool()
        Message = pool.get('payt.message')
        OptOut = pool.get('payt.channel.optout')
        Communication = pool.get('payt.communication')
        administration, items = self._administration("Afmeld BV")
        self.inbox.messages.clear()
        first, = Message.create([{'administration': administration.id,
                    'debtor': items[0].debtor.id, 'body': "First."}])
        self.assertTrue(first.emailed)
        row, = Communication.search([
                ('item.administration', '=', administration.id),
                ('kind', '=', 'message')])
        bounce = ("From: MAILER-DAEMON@example.com\r\n"
            "To: debiteuren@example.com\r\nSubject: Undelivered\r\n"
            "X-Failed-Recipients: debtor-D1@example.com\r\n\r\n"
            "Message-ID: %s\r\n" % row.message_id).encode()
        bounced, = Communication.process_bounce(bounce)
        self.assertEqual(bounced.state, 'failed')
        OptOut.create([{'company': administration.company.id,
                    'address': 'debtor-D1@example.com',
                    'channel': 'email'}])
        second, = Message.create([{'administration': administration.id,
                    'debtor': items[0].debtor.id, 'body': "Second."}])
        self.assertFalse(second.emailed)
        try:
            rows, mails = self._delivered(administration, 'message')
            self.assertEqual(sorted(r.state for r in rows),
                ['failed', 'failed'])
            self.assertIn("opted out", ' '.join(r.error or '' for r in rows))
            self.assertEqual(len(mails), 1)
        finally:
            self._cleanup(administration)


class OneWayOutTestCase(unittest.TestCase):
    "No second way out"

    def test_no_module_but_the_provider_talks_to_smtp(self):
        "Only the email provider sends mail (smtplib, sendmail, SMTP)"
        offenders = []
        for path in sorted(MODULE.rglob('*.py')):
            relative = path.relative_to(MODULE)
            if relative.parts[0] == 'tests' or str(relative) in PROVIDERS:
                continue
            for number, line in enumerate(
                    path.read_text(encoding='utf-8').splitlines(), 1):
                if SENDING.search(line.split('#', 1)[0]):
                    offenders.append('%s:%s: %s' % (
                            relative, number, line.strip()))
        self.assertEqual(offenders, [])
