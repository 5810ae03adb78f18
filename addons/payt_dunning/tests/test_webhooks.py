# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Signed webhooks, received by a real HTTP server on loopback that checks
them as a partner would, from payt-webhooks.yml: X-PAYT-SIGNATURE is the hex
HMAC-SHA256 of the raw body keyed with the secret, compared in constant
time before the JSON is parsed; the body's id dedupes."""
import datetime
import hashlib
import hmac
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from contextlib import contextmanager
from decimal import Decimal
from types import SimpleNamespace

from trytond.model.exceptions import AccessError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .test_case_delivery import Outbound
from .test_server import ADMINISTRATION, SETUP, Database
from .tools import (
    TODAY, create_administration, days, debtor, item, items_by_external_id,
    run)


class Receiver:
    "A partner's endpoint: verifies every request, answers `status`."

    def __init__(self, secret=None, status=200):
        self.secret, self.status = secret, status
        self.received = []   # (headers, raw body, verified)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers['Content-Length']))
                given = self.headers.get('X-PAYT-SIGNATURE', '')
                expected = hmac.new((receiver.secret or '').encode(), raw,
                    hashlib.sha256).hexdigest()
                verified = hmac.compare_digest(given, expected)
                receiver.received.append((self.headers, raw, verified))
                self.send_response(receiver.status if verified else 401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(
            ('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%s/hooks/payt' % (
            self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever,
            daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self):
        "The verified events, parsed only after the signature matched."
        return [json.loads(raw) for _, raw, ok in self.received if ok]


def closed_port_url():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return 'http://127.0.0.1:%s/' % s.getsockname()[1]


class Subscribing:
    "A receiver per test, subscribed to an administration's events."

    def setUp(self):
        super().setUp()
        self.receivers = []

    def tearDown(self):
        for receiver in self.receivers:
            receiver.stop()
        super().tearDown()

    def _receiver(self, **kwargs):
        receiver = Receiver(**kwargs)
        self.receivers.append(receiver)
        return receiver

    def _subscribe(self, administration, receiver=None, url=None, **values):
        "A subscription; its secret as the wizard shows it once."
        Webhook = Pool().get('payt.webhook')
        webhook, = Webhook.create([dict({
                        'administration': administration.id,
                        'url': url or receiver.url}, **values)])
        secret = Webhook.set_secrets([webhook])[webhook.id]
        if receiver:
            receiver.secret = secret
        return webhook, secret

    def _import(self, administration, **batch):
        Pool().get('payt.administration').import_batch(
            administration.id, batch)

    def _send(self):
        return Pool().get('payt.communication').send_pending()

    def _signed_events(self, receiver):
        "Send the outbox; {event: [body]}, every request signed."
        Pool().get('payt.webhook.delivery').send_pending()
        self.assertTrue(receiver.received)
        self.assertTrue(all(ok for _, _, ok in receiver.received))
        events = {}
        for event in receiver.events():
            events.setdefault(event['event'], []).append(event)
        return events


class WebhookTestCase(Subscribing, unittest.TestCase):
    "Webhooks: signed, retried, deactivated, isolated, at least once"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')

    def _due_now(self, deliveries):
        "Time passes: their next attempt is due."
        Delivery = Pool().get('payt.webhook.delivery')
        table = Delivery.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.update([table.next_attempt_at],
                [datetime.datetime.now() - datetime.timedelta(seconds=1)],
                where=table.id.in_([d.id for d in deliveries])))

    @with_transaction()
    def test_payment_and_step_arrive_signed(self):
        "A partner receives an import, a step and a payment, each signed"
        administration = create_administration()
        receiver = self._receiver()
        self._subscribe(administration, receiver)
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY - days(8)),
                item('I2', 'D1', TODAY + days(30))])
        run(administration, TODAY)
        self._import(administration, items=[
                item('I1', 'D1', TODAY - days(8), open_amount='0.00')],
            payments=[{'external_id': 'P1', 'item': 'I1',
                    'date': TODAY.isoformat(), 'amount': '121.00'}])
        # (The run's reminder emails stay in the outbox: only webhooks.)
        Pool().get('payt.webhook.delivery').send_pending()

        self.assertTrue(receiver.received)
        self.assertTrue(all(ok for _, _, ok in receiver.received))
        events = receiver.events()
        names = sorted(e['event'] for e in events)
        self.assertEqual(names, ['invoice_created', 'invoice_created',
                'invoice_paid', 'invoice_payment_created',
                'invoice_step_performed'])
        by_name = {e['event']: e for e in events}
        step = by_name['invoice_step_performed']
        self.assertEqual(step['invoice']['invoice_number'], 'F-I1')
        self.assertEqual(step['debtor']['debtor_number'], 'D1')
        self.assertTrue(step['step']['name'])
        payment = by_name['invoice_payment_created']
        self.assertEqual(payment['payment']['total_amount'], '121.00')
        self.assertEqual(payment['invoice']['invoice_number'], 'F-I1')
        self.assertEqual(by_name['invoice_paid']['invoice']['open_amount'],
            '0.00')
        for headers, raw, _ in receiver.received:
            body = json.loads(raw)
            self.assertEqual(headers['X-PAYT-DELIVERY'], body['id'])
            self.assertEqual(headers['X-PAYT-ADMINISTRATION-IDENTIFIER'],
                str(administration.id))
            self.assertEqual(body['administration']['id'],
                str(administration.id))
        self.assertEqual(len({e['id'] for e in events}), len(events))
        # Delivered once: a next send posts nothing.
        count = len(receiver.received)
        Pool().get('payt.webhook.delivery').send_pending()
        self.assertEqual(len(receiver.received), count)

    @with_transaction()
    def test_chosen_events_and_pauses(self):
        "A subscription to chosen events gets those only; pause and resume"
        pool = Pool()
        Item = pool.get('payt.item')
        Pause = pool.get('payt.pause')
        administration = create_administration()
        everything = self._receiver()
        chosen = self._receiver()
        self._subscribe(administration, everything)
        self._subscribe(administration, chosen, all_events=False,
            events=['invoice_paused', 'invoice_resumed'])
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY)])
        paused, = Item.search([('administration', '=', administration.id)])
        pauses = Pause.hold([paused], 'pause', "Disputed")
        Pause.lift(pauses)
        self._send()

        self.assertEqual([e['event'] for e in chosen.events()],
            ['invoice_paused', 'invoice_resumed'])
        self.assertEqual(sorted(e['event'] for e in everything.events()),
            ['invoice_created', 'invoice_paused', 'invoice_resumed'])
        self.assertEqual(chosen.events()[0]['invoice']['invoice_number'],
            'F-I1')

    @with_transaction()
    def test_plan_events_arrive_signed(self):
        "A plan started, a term missed and broken, another plan finished"
        pool = Pool()
        Plan = pool.get('payt.plan')
        administration = create_administration()
        receiver = self._receiver()
        self._subscribe(administration, receiver)
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY - days(10)),
                item('I2', 'D1', TODAY - days(10))])
        found = items_by_external_id(administration)
        missed = Plan.create_for(found['I1'].debtor, [found['I1']], [], 2,
            TODAY + days(5), break_on_missed=True)
        paid = Plan.create_for(found['I2'].debtor, [found['I2']], [], 2,
            TODAY + days(5))
        Plan.start([missed, paid])
        Plan.process(administration, TODAY + days(10))
        Plan.complete([Plan(paid.id)])
        events = self._signed_events(receiver)

        self.assertEqual(len(events['payment_plan_updated']), 2)
        updated = events['payment_plan_updated'][0]['payment_plan']
        self.assertTrue(updated['active'])
        self.assertEqual(len(updated['payment_terms']), 2)
        # Both first terms were missed; one plan breaks on it.
        self.assertEqual(sorted(e['payment_plan']['id']
                for e in events['payment_plan_term_expired']),
            sorted([str(missed.id), str(paid.id)]))
        expired = events['payment_plan_term_expired'][0]
        self.assertEqual(expired['payment_term']['due_date'],
            (TODAY + days(5)).isoformat())
        self.assertEqual(expired['debtor']['debtor_number'], 'D1')
        deactivated, = events['payment_plan_deactivated']
        self.assertEqual(deactivated['payment_plan']['id'], str(missed.id))
        self.assertFalse(deactivated['payment_plan']['active'])
        self.assertTrue(deactivated['payment_plan']['deactivated_at'])
        finished, = events['payment_plan_finished']
        self.assertEqual(finished['payment_plan']['id'], str(paid.id))

    @with_transaction()
    def test_case_events_arrive_signed(self):
        "To debt collection, each case step, to the bailiff, a case paid"
        pool = Pool()
        Case = pool.get('payt.case')
        administration = create_administration()
        receiver = self._receiver()
        self._subscribe(administration, receiver)
        self._import(administration,
            debtors=[debtor('D1'), debtor('D2')],
            items=[item('I1', 'D1', TODAY - days(40)),
                item('I2', 'D2', TODAY - days(40))])
        found = items_by_external_id(administration)
        escalated, = Case.open_for_items([found['I1']], TODAY)
        paid, = Case.open_for_items([found['I2']], TODAY)
        for _ in range(5):
            Case.escalate([Case(escalated.id)])
        Case.close_paid([Case(paid.id)])
        events = self._signed_events(receiver)

        self.assertEqual(sorted(e['invoice']['invoice_number']
                for e in events['invoice_to_debt_collection']),
            ['F-I1', 'F-I2'])
        self.assertEqual({e['credit_case']['id']
                for e in events['invoice_to_debt_collection']},
            {str(escalated.id), str(paid.id)})
        self.assertEqual([e['step']['name']
                for e in events['case_step_performed']],
            ['summons', 'second_summons', 'notice_of_default',
                'prejudiciary'])
        bailiff, = events['case_to_bailiff']
        self.assertEqual(bailiff['credit_case']['id'], str(escalated.id))
        self.assertTrue(bailiff['credit_case']['forwarded_to_bailiff_at'])
        case_paid, = events['case_paid']
        self.assertEqual(case_paid['credit_case']['id'], str(paid.id))
        self.assertEqual(case_paid['debtor']['debtor_number'], 'D2')

    @with_transaction()
    def test_block_comments_and_psp_arrive_signed(self):
        "Blocked, a debtor's comments, a Mollie payment paid and reversed"
        pool = Pool()
        Pause = pool.get('payt.pause')
        Message = pool.get('payt.message')
        OnlinePayment = pool.get('payt.online.payment')
        administration = create_administration()
        receiver = self._receiver()
        self._subscribe(administration, receiver)
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY), item('I2', 'D1', TODAY),
                item('I3', 'D1', TODAY, amount='100.00'),
                item('I4', 'D1', TODAY)])
        found = items_by_external_id(administration)
        Pause.hold([found['I1']], 'stop', "Bankrupt")
        # As PATCH /v1/invoices/block does (api.block_invoices).
        Pause.hold([found['I4']], 'pause', "Blocked through the API",
            automatic='api')
        Pause.hold([found['I2']], 'pause', "Disputed",
            end_date=TODAY + days(14))
        the_debtor = found['I1'].debtor
        Message.create([{'administration': administration.id,
                    'debtor': the_debtor.id, 'item': found['I2'].id,
                    'direction': 'in', 'body': "Wrong amount"}, {
                    'administration': administration.id,
                    'debtor': the_debtor.id, 'direction': 'in',
                    'body': "New address"}, {
                    'administration': administration.id,
                    'debtor': the_debtor.id, 'direction': 'out',
                    'body': "Thank you"}])
        payment, = OnlinePayment.create([{
                    'company': administration.company.id,
                    'administration': administration.id,
                    'debtor': the_debtor.id,
                    'currency': administration.company.currency.id,
                    'amount': Decimal('100.00'), 'mollie_id': 'tr_test',
                    'lines': [('create', [{'item': found['I3'].id,
                                    'amount': Decimal('100.00')}])]}])

        def mollie(refunded=None, charged_back=None):
            money = lambda v: {'value': v, 'currency': 'EUR'} if v else None
            return SimpleNamespace(status='paid', method='ideal',
                amount_refunded=money(refunded),
                amount_chargedback=money(charged_back), mandate_id=None)
        for answer in [mollie(), mollie(), mollie('10.00'),
                mollie('10.00', '90.00')]:
            OnlinePayment(payment.id)._apply(answer, None)
        events = self._signed_events(receiver)

        self.assertEqual(sorted(e['invoice']['invoice_number']
                for e in events['invoice_blocked']), ['F-I1', 'F-I4'])
        paused, = events['invoice_paused']
        self.assertEqual(paused['invoice']['invoice_number'], 'F-I2')
        comment, = events['invoice_new_comment']
        self.assertEqual(comment['invoice']['invoice_number'], 'F-I2')
        self.assertEqual(comment['comment']['content'], "Wrong amount")
        self.assertEqual(comment['comment']['sender_type'], 'debtor')
        comment, = events['debtor_new_comment']
        self.assertEqual(comment['comment']['content'], "New address")
        self.assertEqual(comment['debtor']['debtor_number'], 'D1')
        # Paid once, though Mollie said so twice.
        successful, = events['psp_transaction_successful']
        self.assertEqual(successful['psp_transaction']['amount'], '100.00')
        self.assertEqual(successful['psp_transaction']['status'], 'paid')
        self.assertEqual(successful['psp_transaction']['invoice_ids'],
            [str(found['I3'].id)])
        refunded, = events['psp_transaction_refunded']
        self.assertEqual(refunded['psp_transaction']['status'], 'refunded')
        charged_back, = events['psp_transaction_charged_back']
        self.assertEqual(charged_back['psp_transaction']['status'],
            'charged_back')

    @with_transaction()
    def test_failing_receiver_retried_then_deactivated(self):
        "404 ten times, growing waits: deactivated, the administration told"
        pool = Pool()
        Delivery = pool.get('payt.webhook.delivery')
        Webhook = pool.get('payt.webhook')
        Attention = pool.get('payt.attention')
        administration = create_administration()
        receiver = self._receiver(status=404)
        webhook, _ = self._subscribe(administration, receiver)
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY)])
        delivery, = Delivery.search([])

        waits = []
        for attempt in range(1, 11):
            if attempt == 6:
                receiver.status = 500
            self._send()
            delivery = Delivery(delivery.id)
            self.assertEqual(delivery.attempts, attempt)
            self.assertEqual(len(receiver.received), attempt)
            if attempt < 10:
                self.assertEqual(delivery.state, 'pending')
                waits.append(delivery.next_attempt_at - delivery.attempt_at)
                # Not before its time.
                self._send()
                self.assertEqual(len(receiver.received), attempt)
                self._due_now([delivery])
        self.assertEqual(waits, sorted(waits))
        self.assertGreater(waits[-1], waits[0] * 100)
        self.assertEqual(delivery.state, 'failed')
        self.assertEqual(delivery.status_code, 500)
        # Every attempt carried the same delivery id.
        self.assertEqual({h['X-PAYT-DELIVERY'] for h, _, _
                in receiver.received}, {delivery.uuid})
        webhook = Webhook(webhook.id)
        self.assertFalse(webhook.active)
        self.assertTrue(webhook.deactivated_at)
        attention, = Attention.search([
                ('administration', '=', administration.id),
                ('reason', '=', 'webhook_failing')])
        self.assertIn(receiver.url, attention.description)

        # Deactivated: nothing more is posted, until reactivated.
        self._import(administration, items=[item('I2', 'D1', TODAY)])
        self._send()
        self.assertEqual(len(receiver.received), 10)
        receiver.status = 200
        Webhook.write([webhook], {'active': True})
        self._import(administration, items=[item('I3', 'D1', TODAY)])
        self._send()
        self.assertEqual([e['invoice']['invoice_number']
                for e in receiver.events()[10:]], ['F-I3'])

    @with_transaction()
    def test_unreachable_receiver_retried(self):
        "A refused connection is an attempt, tried again later"
        Delivery = Pool().get('payt.webhook.delivery')
        administration = create_administration()
        self._subscribe(administration, url=closed_port_url())
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY), item('I2', 'D1', TODAY)])
        self.assertEqual(self._send(), 0)
        deliveries = Delivery.search([], order=[('id', 'ASC')])
        self.assertEqual([d.state for d in deliveries], ['pending'] * 2)
        # The first one found the receiver down; the other was not tried.
        self.assertEqual(sorted(d.attempts for d in deliveries), [0, 1])
        tried, = [d for d in deliveries if d.attempts]
        self.assertTrue(tried.error)
        self.assertGreater(tried.next_attempt_at, datetime.datetime.now())

    @with_transaction()
    def test_killed_between_post_and_commit_resends_same_id(self):
        "A sender killed after the POST, before its commit: sent again"
        from trytond.modules.payt_dunning.webhook import Delivery as Sender
        Delivery = Pool().get('payt.webhook.delivery')
        administration = create_administration()
        receiver = self._receiver()
        self._subscribe(administration, receiver)
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY)])
        # The sender's steps as channel.run_sender takes them: the claim
        # (committed), the POST, and then it dies: no record.
        ids = Delivery.claim()
        Sender.post_all(Delivery.jobs(ids))
        self.assertEqual(len(receiver.received), 1)
        delivery, = Delivery.browse(ids)
        self.assertEqual(delivery.state, 'pending')
        # Not sent again at once by another sender ...
        self._send()
        self.assertEqual(len(receiver.received), 1)
        # ... but when its next attempt is due, with the same id.
        self._due_now([delivery])
        self._send()
        self.assertEqual(Delivery(delivery.id).state, 'delivered')
        first, second = [h['X-PAYT-DELIVERY'] for h, _, _
            in receiver.received]
        self.assertEqual(first, second)
        self.assertEqual(receiver.received[0][1], receiver.received[1][1])

    @contextmanager
    def _as(self, user):
        "Act as the user would over RPC: her preferences, access checked."
        User = Pool().get('res.user')
        transaction = Transaction()
        with transaction.set_user(user.id):
            context = User.get_preferences(context_only=True)
            with transaction.set_context(context, _check_access=True):
                yield

    @with_transaction()
    def test_other_administration_subscriptions_out_of_reach(self):
        "A consultant of one company neither sees nor changes another's"
        pool = Pool()
        Webhook = pool.get('payt.webhook')
        Delivery = pool.get('payt.webhook.delivery')
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        ours = create_administration("Ours BV")
        theirs = create_administration("Theirs BV")
        our_hook, _ = self._subscribe(ours, url='https://ours.example/h')
        their_hook, _ = self._subscribe(theirs,
            url='https://theirs.example/h')
        self._import(theirs, debtors=[debtor('T1')],
            items=[item('TI1', 'T1', TODAY)])
        group = lambda name: ModelData.get_id('payt_dunning', name)
        consultant, anna = User.create([{
                    'name': "Carla", 'login': 'carla',
                    'companies': [('add', [ours.company.id])],
                    'company': ours.company.id,
                    'groups': [('add', [group('group_payt'),
                                group('group_payt_consultant')])],
                    }, {
                    'name': "Anna", 'login': 'anna',
                    'companies': [('add', [ours.company.id])],
                    'company': ours.company.id,
                    'groups': [('add', [group('group_payt')])],
                    }])

        with self._as(consultant):
            self.assertEqual(Webhook.search([]), [Webhook(our_hook.id)])
            self.assertEqual(Delivery.search([]), [])
            with self.assertRaises(AccessError):
                Webhook.read([their_hook.id], ['url'])
            with self.assertRaises(AccessError):
                Webhook.write([Webhook(their_hook.id)],
                    {'url': 'https://evil.example/'})
            with self.assertRaises(AccessError):
                Webhook.delete([Webhook(their_hook.id)])
            # (Refused after the insert: over RPC the transaction is rolled
            # back.)
            with self.assertRaises(AccessError):
                Webhook.create([{'administration': theirs.id,
                            'url': 'https://evil.example/'}])
            # Her own subscription's secret is not readable either.
            with self.assertRaises(AccessError):
                Webhook.read([our_hook.id], ['secret'])
            Webhook.write([Webhook(our_hook.id)],
                {'url': 'https://ours.example/new'})
        with self._as(anna):
            with self.assertRaises(AccessError):
                Webhook.read([our_hook.id], ['url'])

        their_hook = Webhook(their_hook.id)
        self.assertEqual(their_hook.url, 'https://theirs.example/h')
        self.assertTrue(their_hook.active)

    def _wizard(self, name, model, record_id, data, state):
        "Run a wizard as the client does; the view of its next state."
        Wizard = Pool().get(name, type='wizard')
        with Transaction().set_context(active_model=model,
                active_id=record_id, active_ids=[record_id]):
            session_id, _, _ = Wizard.create()
            result = Wizard.execute(session_id, data, state)
        return result['view']['defaults']

    @with_transaction()
    def test_secret_shown_once_by_the_wizards(self):
        "Create Webhook and Rotate Secret show a secret that then signs"
        pool = Pool()
        Webhook = pool.get('payt.webhook')
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        ours = create_administration("Ours BV")
        theirs = create_administration("Theirs BV")
        their_hook, _ = self._subscribe(theirs,
            url='https://theirs.example/h')
        consultant, = User.create([{'name': "Carla", 'login': 'carla',
                    'companies': [('add', [ours.company.id])],
                    'company': ours.company.id,
                    'groups': [('add', [ModelData.get_id('payt_dunning',
                                    'group_payt_consultant')])]}])
        receiver = self._receiver()
        start = {'start': {'administration': ours.id, 'url': receiver.url,
                'all_events': True, 'events': []}}
        with self._as(consultant):
            shown = self._wizard('payt.webhook.create', 'payt.administration',
                ours.id, start, 'create_')['secret']
            webhook, = Webhook.search([])
            rotated = self._wizard('payt.webhook.secret', 'payt.webhook',
                webhook.id, {}, 'start')['secret']
            with self.assertRaises(AccessError):
                self._wizard('payt.webhook.secret', 'payt.webhook',
                    their_hook.id, {}, 'start')
            with self.assertRaises(AccessError):
                self._wizard('payt.webhook.create', 'payt.administration',
                    theirs.id, dict(start, start=dict(start['start'],
                            administration=theirs.id)), 'create_')
        self.assertTrue(shown.startswith('whsec_'))
        self.assertNotEqual(shown, rotated)
        receiver.secret = rotated
        self._import(ours, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY)])
        self._send()
        self.assertEqual([ok for _, _, ok in receiver.received], [True])

    @with_transaction()
    def test_rotated_secret_signs_from_then_on(self):
        "After Rotate Secret the receiver verifies with the new secret only"
        pool = Pool()
        Webhook = pool.get('payt.webhook')
        administration = create_administration()
        receiver = self._receiver()
        webhook, first = self._subscribe(administration, receiver)
        second = Webhook.set_secrets([webhook])[webhook.id]
        self.assertNotEqual(first, second)
        self._import(administration, debtors=[debtor('D1')],
            items=[item('I1', 'D1', TODAY)])
        receiver.secret = first
        self._send()
        self.assertEqual([ok for _, _, ok in receiver.received], [False])
        receiver.secret = second
        self._due_now(pool.get('payt.webhook.delivery').search([]))
        self._send()
        self.assertEqual([ok for _, _, ok in receiver.received],
            [False, True])


class WebhookEmailTestCase(Subscribing, Outbound, unittest.TestCase):
    "Webhooks of the emails: a bundled reminder sent, an email bounced"

    @with_transaction()
    def test_bundled_reminder_sent_and_bounced(self):
        "A partner hears of a bundle of two reminders, and of its bounce"
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = create_administration("Bundel BV")
        receiver = self._receiver()
        self._subscribe(administration, receiver, all_events=False,
            events=['bundled_reminder_sent', 'email_bounced'])
        self._import(administration,
            debtors=[debtor('D1', language='en')],
            items=[item('B1', 'D1', TODAY - days(7)),
                item('B2', 'D1', TODAY - days(8))])
        run(administration, TODAY)
        self.inbox.messages.clear()
        Communication.send_pending(administration)
        (_, mail), = self.inbox.messages
        bounce = ("From: MAILER-DAEMON@example.com\r\n"
            "Subject: Undelivered\r\n"
            "X-Failed-Recipients: debtor-D1@example.com\r\n\r\n"
            "Message-ID: %s\r\n" % mail['Message-ID']).encode()
        self.assertEqual(len(Communication.process_bounce(bounce)), 2)
        # A second report of the same bounce is no new event.
        Communication.process_bounce(bounce)
        events = self._signed_events(receiver)

        self.assertEqual(sorted(events), ['bundled_reminder_sent',
                'email_bounced'])
        sent, = events['bundled_reminder_sent']
        bounced, = events['email_bounced']
        for event in [sent, bounced]:
            self.assertEqual(sorted(i['invoice_number']
                    for i in event['invoices']), ['F-B1', 'F-B2'])
            self.assertEqual(event['debtor']['debtor_number'], 'D1')
            self.assertEqual(event['email']['recipient'],
                'debtor-D1@example.com')
        self.assertTrue(sent['email']['sent_at'])
        self.assertIn("Undeliverable", bounced['email']['reason'])


SUBSCRIBE = """
Administration = pool.get('payt.administration')
Webhook = pool.get('payt.webhook')
administration, = Administration.search([])
webhook, = Webhook.create([{'administration': administration.id,
    'url': %r}])
print(json.dumps([administration.id,
    Webhook.set_secrets([webhook])[webhook.id]]))
"""
DELIVERIES = """
Delivery = pool.get('payt.webhook.delivery')
print(json.dumps([[d.uuid, d.state, d.attempts]
    for d in Delivery.search([], order=[('id', 'ASC')])]))
"""
DUE_NOW = """
import datetime
Delivery = pool.get('payt.webhook.delivery')
Delivery.write(Delivery.search([]), {
    'next_attempt_at': datetime.datetime.now()})
"""


class HeldReceiver(Receiver):
    "Holds the first request until released: the sender waits for it."

    def __init__(self):
        super().__init__()
        self.arrived, self.release = threading.Event(), threading.Event()
        handler = self.server.RequestHandlerClass
        post = handler.do_POST
        receiver = self

        def do_POST(request):
            if not receiver.arrived.is_set():
                receiver.arrived.set()
                receiver.release.wait(60)
            post(request)
        handler.do_POST = do_POST


class SenderKilledTestCase(unittest.TestCase):
    "channel.run_sender killed (kill -9) between a POST and its commit"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.database = Database()
        cls.database.python(SETUP)
        cls.database.python(ADMINISTRATION % "Hooks BV")

    @classmethod
    def tearDownClass(cls):
        cls.database.drop()
        super().tearDownClass()

    def _python(self, code):
        return json.loads(self.database.python(code).strip().splitlines(
                )[-1])

    def _sender(self):
        return subprocess.Popen([sys.executable, '-c',
                'import sys; from trytond.modules.payt_dunning.channel '
                'import main; sys.exit(main())',
                '-d', self.database.name, '--batch-size', '1'],
            env=self.database.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)

    def test_killed_sender_resends_the_same_delivery(self):
        "Killed while the receiver holds the POST: sent again, same id"
        receiver = HeldReceiver()
        self.addCleanup(receiver.stop)
        administration, receiver.secret = self._python(
            SUBSCRIBE % receiver.url)
        path = os.path.join(self.database.folder, 'batch.json')
        with open(path, 'w') as f:
            json.dump({'debtors': [debtor('D1')], 'items': [
                        item('I1', 'D1', TODAY), item('I2', 'D1', TODAY)]},
                f)
        self.database.payt('import', '-d', self.database.name,
            '--administration', 'Hooks BV', path)
        self.assertEqual([d[1:] for d in self._python(DELIVERIES)],
            [['pending', 0], ['pending', 0]])

        sender = self._sender()
        self.assertTrue(receiver.arrived.wait(120), sender.stderr.read()
            if sender.poll() is not None else "no POST")
        sender.send_signal(signal.SIGKILL)
        sender.wait(30)
        receiver.release.set()
        # The held request is recorded once released (a busy machine may
        # take its time).
        for _ in range(300):
            if receiver.received:
                break
            time.sleep(0.1)
        first = receiver.received[0][0]['X-PAYT-DELIVERY']
        # The claim was committed, the delivery was not marked.
        deliveries = self._python(DELIVERIES)
        self.assertEqual([d[1:] for d in deliveries],
            [['pending', 1], ['pending', 0]])
        self.assertEqual(deliveries[0][0], first)

        self.database.python(DUE_NOW)
        sender = self._sender()
        out, err = sender.communicate(timeout=300)
        self.assertEqual(sender.returncode, 0, err)
        self.assertEqual([d[1] for d in self._python(DELIVERIES)],
            ['delivered', 'delivered'])
        ids = [h['X-PAYT-DELIVERY'] for h, _, _ in receiver.received]
        self.assertEqual(ids, [first, first, deliveries[1][0]])
        self.assertTrue(all(ok for _, _, ok in receiver.received))
        self.assertEqual({h['X-PAYT-ADMINISTRATION-IDENTIFIER']
                for h, _, _ in receiver.received}, {str(administration)})
