# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""One way out: every kind of message to a debtor is a row of the
communication outbox and reaches its provider (here the SMTP catcher),
with opt-outs, bounces and delivery status; no module but the email
provider talks to SMTP."""
import pathlib
import re
import unittest
from decimal import Decimal

from trytond.pool import Pool
from trytond.tests.test_tryton import with_transaction
from trytond.transaction import Transaction

from .test_case_delivery import Outbound
from .tools import TODAY, create_administration, days, debtor, item

MODULE = pathlib.Path(__file__).resolve().parent.parent
# Talking to a mail server: only the email provider may.
SENDING = re.compile(r'\bsmtplib\b|\bsendmail\b|send_message|\bSMTP(_SSL)?\('
    r'|\bmail_debtor\b')
PROVIDERS = {'providers/smtp.py'}


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


class BundleTestCase(Outbound, unittest.TestCase):
    "One email per debtor, step and day"

    def _run(self, name, items, per_invoice=False, kind='business',
            date=TODAY):
        "The debtor's items through the run and the sender, committed."
        pool = Pool()
        Administration = pool.get('payt.administration')
        Communication = pool.get('payt.communication')
        Flow = pool.get('payt.flow')
        administration = create_administration(name)
        if per_invoice:
            Flow.write([administration.flow], {'per_invoice': True})
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1', kind, language='en')],
                'items': items})
        pool.get('payt.run').execute(administration, date)
        self.inbox.messages.clear()
        Communication.send_pending(administration)
        Transaction().commit()
        return administration, Communication.search([
                ('item.administration', '=', administration.id),
                ('channel', '=', 'email')])

    def _cleanup(self, administration):
        Administration = Pool().get('payt.administration')
        Administration.delete([Administration(administration.id)])
        Transaction().commit()

    @with_transaction()
    def test_three_items_one_email_with_the_total(self):
        "A debtor with 3 items due for a step gets 1 email naming all 3"
        administration, rows = self._run("Bundel BV", [
                item('B1', 'D1', TODAY - days(7), amount='100.00'),
                item('B2', 'D1', TODAY - days(8), amount='200.00'),
                item('B3', 'D1', TODAY - days(9), amount='300.50')])
        try:
            self.assertEqual(len(rows), 3)
            (rcpt, mail), = self.inbox.messages
            self.assertEqual(rcpt, ['debtor-D1@example.com'])
            self.assertEqual(mail['Subject'],
                "First reminder: 3 invoices, EUR 600.50 in all")
            body = mail.get_content()
            for number in ('F-B1', 'F-B2', 'F-B3'):
                self.assertIn(number, body)
            self.assertIn('EUR 100.00', body)
            self.assertIn('EUR 300.50', body)
            self.assertRegex(body, r'Total\s+EUR 600\.50')
            # The payment data of the whole: IBAN, reference and link.
            self.assertIn('/payt/portal/', body)
            # Every item's row points at the one message.
            self.assertEqual({(r.state, r.message_id) for r in rows},
                {('sent', mail['Message-ID'])})
            for row in rows:
                event, = [e for e in row.item.events if e.kind == 'sent']
                self.assertEqual(event.communication.message_id,
                    mail['Message-ID'])
        finally:
            self._cleanup(administration)

    @with_transaction()
    def test_per_invoice_setting_sends_one_email_each(self):
        "With one email per invoice on the flow, 3 items give 3 emails"
        administration, rows = self._run("Los BV", [
                item('P1', 'D1', TODAY - days(7)),
                item('P2', 'D1', TODAY - days(8)),
                item('P3', 'D1', TODAY - days(9))], per_invoice=True)
        try:
            self.assertEqual(len(self.inbox.messages), 3)
            self.assertEqual(len({r.message_id for r in rows}), 3)
            subjects = sorted(m['Subject'] for _, m in self.inbox.messages)
            self.assertEqual(subjects, ['First reminder invoice F-P1',
                    'First reminder invoice F-P2',
                    'First reminder invoice F-P3'])
        finally:
            # The default flow is shared: back to bundling for the others.
            Flow = Pool().get('payt.flow')
            Flow.write([administration.flow], {'per_invoice': False})
            self._cleanup(administration)

    @with_transaction()
    def test_final_notice_states_the_costs_over_the_summed_principal(self):
        "The 14-day email of 2 invoices states the WIK costs of their sum,"
        " once"
        from ..law import collection_costs
        administration, rows = self._run("Kosten BV", [
                item('K1', 'D1', TODAY - days(21), amount='1199.00'),
                item('K2', 'D1', TODAY - days(22), amount='3596.00')],
            kind='consumer')
        try:
            self.assertEqual({r.step.action for r in rows}, {'final_notice'})
            (_, mail), = self.inbox.messages
            body = mail.get_content()
            apart = [collection_costs(Decimal(a), 'consumer').total
                for a in ('1199.00', '3596.00')]
            self.assertEqual(apart, [Decimal('179.85'), Decimal('484.60')])
            summed = collection_costs(Decimal('4795.00'), 'consumer').total
            self.assertIn('EUR {:,.2f}'.format(summed), body)
            for costs in apart + [sum(apart)]:
                self.assertNotIn('EUR {:,.2f}'.format(costs), body)
            self.assertEqual(body.count('collection costs of'), 1)
        finally:
            self._cleanup(administration)

    @with_transaction()
    def test_opted_out_and_bounced_bundles(self):
        "An opted-out debtor's bundle fails whole; a bounce fails every row"
        pool = Pool()
        OptOut = pool.get('payt.channel.optout')
        Communication = pool.get('payt.communication')
        administration, rows = self._run("Stuit BV", [
                item('S1', 'D1', TODAY - days(7)),
                item('S2', 'D1', TODAY - days(8))])
        try:
            (_, mail), = self.inbox.messages
            bounce = ("From: MAILER-DAEMON@example.com\r\n"
                "Subject: Undelivered\r\n"
                "X-Failed-Recipients: debtor-D1@example.com\r\n\r\n"
                "Message-ID: %s\r\n" % mail['Message-ID']).encode()
            bounced = Communication.process_bounce(bounce)
            self.assertEqual(sorted(r.id for r in bounced),
                sorted(r.id for r in rows))
            self.assertEqual({r.state for r in bounced}, {'failed'})
        finally:
            self._cleanup(administration)
        administration = create_administration("Stil BV")
        OptOut.create([{'company': administration.company.id,
                    'address': 'debtor-D1@example.com', 'channel': 'email'}])
        Transaction().commit()
        Administration = pool.get('payt.administration')
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1', language='en')],
                'items': [item('O1', 'D1', TODAY - days(7)),
                    item('O2', 'D1', TODAY - days(8))]})
        pool.get('payt.run').execute(administration, TODAY)
        self.inbox.messages.clear()
        Communication.send_pending(administration)
        Transaction().commit()
        try:
            rows = Communication.search([
                    ('item.administration', '=', administration.id)])
            self.assertEqual({(r.state, r.error) for r in rows},
                {('failed', "The debtor opted out of email")})
            self.assertEqual(self.inbox.messages, [])
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
