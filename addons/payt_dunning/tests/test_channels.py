# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Every channel through its adapter to its simulator over real sockets,
with the status coming back: SMS and robocall (CM.com), letters (print and
mail), email (SMTP with bounces and delivery notifications)."""
import email
import email.policy
import io
import json
import smtplib
import socket
import threading
import time
import unittest
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from pypdf import PdfReader

from trytond import config
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from payt_hub.simulators.cm import PRODUCT_TOKEN, CMSimulator
from payt_hub.simulators.printmail import (
    API_KEY, WEBHOOK_SECRET, PrintMailSimulator, sign)

from ..bulk import invalidate_caches
from ..channel import PhoneError, normalise_phone
from ..providers import SECTION, CMProvider, PrintMailProvider
from .tools import TODAY, create_administration, days, debtor, item

CALLBACK_TOKEN = 'test-callback-token'


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class Receiver:
    """Stands in for our callback route: a real HTTP server keeping every
    callback (path, query, headers, body) for the test to apply."""

    def __init__(self):
        self.calls = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length)
                url = urllib.parse.urlsplit(self.path)
                receiver.calls.append((url.path.rsplit('/', 1)[-1],
                        dict(urllib.parse.parse_qsl(url.query)),
                        dict(self.headers), body))
                self.send_response(200)
                self.send_header('Content-Length', '2')
                self.end_headers()
                self.wfile.write(b'{}')

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%s/db/payt/callback' % (
            self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever,
            daemon=True).start()

    def wait(self, count, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.calls) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.calls)

    def take(self):
        calls, self.calls[:] = list(self.calls), []
        return calls

    def new(self, count, timeout=20):
        "The calls not taken yet, once there are at least `count`."
        self.wait(count, timeout)
        calls = list(self.calls)
        del self.calls[:len(calls)]
        return calls

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def apply_callbacks(calls):
    "What the route does with each callback."
    pool = Pool()
    Communication = pool.get('payt.communication')
    OptOut = pool.get('payt.channel.optout')
    updated = []
    for provider, query, headers, body in calls:
        query = dict(query)
        if provider == 'cm-inbound':
            assert CMProvider().verify(body, headers, query)
            OptOut.record_reply(*CMProvider().parse_inbound(body, query))
            continue
        handler = {'cm': CMProvider, 'printmail': PrintMailProvider}[
            provider]()
        assert handler.verify(body, headers, query), (provider, headers)
        query.pop('token', None)
        updated += Communication.apply_reports(provider,
            handler.parse_callback(body, headers, query))
    return updated


class ChannelTestCase(unittest.TestCase):
    "Channels, providers and delivery status"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')
        cls.receiver = Receiver()
        cls.cm = CMSimulator(dlr_url=cls.receiver.url + '/cm?token='
            + CALLBACK_TOKEN, inbound_url=cls.receiver.url
            + '/cm-inbound?token=' + CALLBACK_TOKEN).start()
        cls.printmail = PrintMailSimulator().start()
        if not config.has_section(SECTION):
            config.add_section(SECTION)
        for name, value in {
                'cm_url': cls.cm.url, 'cm_voice_url': cls.cm.url,
                'cm_token': PRODUCT_TOKEN,
                'printmail_url': cls.printmail.url,
                'printmail_key': API_KEY,
                'printmail_secret': WEBHOOK_SECRET,
                'callback_url': cls.receiver.url,
                'cm_callback_secret': CALLBACK_TOKEN,
                'reconcile_seconds': '600',
                }.items():
            config.set(SECTION, name, value)

    @classmethod
    def tearDownClass(cls):
        cls.cm.stop()
        cls.printmail.stop()
        cls.receiver.stop()
        config.remove_section(SECTION)
        super().tearDownClass()

    def setUp(self):
        # References are random: a rolled-back test's messages never match
        # another's.
        self.receiver.take()

    def _administration(self, channels, debtors, items, name="Kanalen BV"):
        "An administration whose first reminder goes out on `channels`."
        pool = Pool()
        Administration = pool.get('payt.administration')
        Step = pool.get('payt.flow.step')
        administration = create_administration(name)
        first, = [s for s in administration.flow.steps if s.lead_days == 7]
        Step.write([first], {'channels': channels})
        Administration.import_batch(administration.id, {
                'debtors': debtors, 'items': items})
        pool.get('payt.run').execute(administration, TODAY)
        return administration

    def _communications(self, administration, channel):
        Communication = Pool().get('payt.communication')
        return Communication.search([
                ('item.administration', '=', administration.id),
                ('channel', '=', channel)], order=[('id', 'ASC')])

    def test_phone_numbers_normalised_to_e164(self):
        "Phone numbers are read in the debtor's country and given in E.164"
        self.assertEqual(normalise_phone('06-12345678'), '+31612345678')
        self.assertEqual(normalise_phone('0031 6 1234 5678'), '+31612345678')
        self.assertEqual(normalise_phone('0470 12 34 56', 'BE'),
            '+32470123456')
        self.assertEqual(normalise_phone('020 123 4567'), '+31201234567')
        with self.assertRaises(PhoneError):
            normalise_phone('020 123 4567', mobile=True)
        for wrong in [None, '', 'bel me', '06-123']:
            with self.assertRaises(PhoneError):
                normalise_phone(wrong)

    @with_transaction()
    def test_sms_through_cm_delivered_and_stop_honoured(self):
        "SMS via CM's API to the simulator; reports come back; STOP opts out"
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = self._administration(['sms'], [
                debtor('MOB', phone='06 12345678'),
                debtor('FIX', phone='020 1234567'),
                debtor('NONE', phone=None),
                debtor('GONE', phone='+31 6 87654321')],
            [item('A', 'MOB', TODAY - days(7)),
                item('B', 'FIX', TODAY - days(7)),
                item('C', 'NONE', TODAY - days(7)),
                item('D', 'GONE', TODAY - days(7))])
        self.cm.control_unreachable('+31687654321')
        sent = Communication.send_pending(administration)
        self.assertEqual(sent, 2)
        by_item = {c.item.external_id: c for c in self._communications(
                administration, 'sms')}
        self.assertEqual(by_item['A'].state, 'queued')
        self.assertEqual(by_item['A'].recipient, '+31612345678')
        self.assertEqual(by_item['A'].provider, 'cm')
        self.assertIn('not a mobile number', by_item['B'].error)
        self.assertEqual(by_item['B'].state, 'failed')
        self.assertEqual(by_item['C'].state, 'failed')
        messages = {m['number']: m for m in self.cm.messages
            if m['reference'] in {c.idempotency_key
                for c in by_item.values()}}
        self.assertEqual(set(messages), {'+31612345678', '+31687654321'})
        self.assertIn('F-A', messages['+31612345678']['content'])
        self.assertIn('EUR 121,00', messages['+31612345678']['content'])
        self.assertEqual(messages['+31612345678']['reference'],
            by_item['A'].idempotency_key)
        # Two reports each: accepted, then delivered or failed.
        apply_callbacks(self.receiver.new(4))
        for communication in by_item.values():
            communication = Communication(communication.id)
        delivered = Communication(by_item['A'].id)
        self.assertEqual(delivered.state, 'delivered')
        self.assertTrue(delivered.delivered_at)
        self.assertIn('delivered', [e.kind for e in delivered.item.events])
        failed = Communication(by_item['D'].id)
        self.assertEqual(failed.state, 'failed')
        self.assertEqual(failed.error, 'Unknown subscriber')
        # A late "accepted" report does not move it back.
        apply_callbacks([('cm', {'token': CALLBACK_TOKEN}, {}, json.dumps(
                        {'messages': {'msg': {
                                'reference': delivered.idempotency_key,
                                'status': {'code': '0'}}}}).encode())])
        self.assertEqual(Communication(delivered.id).state, 'delivered')

        # The debtor replies STOP: no more SMS or calls to that number.
        self.cm.control_inbound(text='STOP', **{'from': '0031612345678'})
        apply_callbacks(self.receiver.new(1))
        OptOut = pool.get('payt.channel.optout')
        self.assertEqual(sorted(o.channel for o in OptOut.search([
                        ('address', '=', '+31612345678')])), ['call', 'sms'])
        before = len(self.cm.messages)
        old = self._communications(administration, 'sms')
        values = [{'company': c.company.id, 'item': c.item.id,
                'step': c.step.id, 'channel': 'sms', 'run_date': TODAY,
                'state': 'pending'} for c in old]
        Communication.delete(old)
        Communication.create(values)
        Communication.send_pending(administration)
        again = {c.item.external_id: c for c in self._communications(
                administration, 'sms')}
        self.assertEqual(again['A'].state, 'failed')
        self.assertEqual(again['A'].error, 'The debtor opted out of sms')
        self.assertEqual(len(self.cm.messages), before + 1)  # D only

    @with_transaction()
    def test_robocall_spoken_in_the_debtors_language(self):
        "A robocall is a TTS notification call; its end settles the status"
        Communication = Pool().get('payt.communication')
        administration = self._administration(['call'], [
                debtor('NL', phone='0612345670'),
                debtor('EN', phone='+442079460958', language='en',
                    country='GB')],
            [item('A', 'NL', TODAY - days(7)),
                item('B', 'EN', TODAY - days(7))], name="Bellen BV")
        self.assertEqual(Communication.send_pending(administration), 2)
        calls = {c['callee']: c for c in self.cm.calls}
        dutch = calls['+31612345670']
        self.assertEqual(dutch['voice']['language'], 'nl-NL')
        self.assertIn('Factuur F-A staat nog open', dutch['prompt'])
        self.assertIn('key=', dutch['callback-url'])
        english = calls['+442079460958']
        self.assertEqual(english['voice']['language'], 'en-GB')
        apply_callbacks(self.receiver.new(4))
        states = {c.item.external_id: c.state
            for c in self._communications(administration, 'call')}
        self.assertEqual(states, {'A': 'delivered', 'B': 'delivered'})

    @with_transaction()
    def test_letter_printed_once_delivered_then_returned(self):
        """One letter per debtor covering its items, printed once even when
        sent again, status by signed webhooks, returned raises attention"""
        from .test_words import load_dutch
        load_dutch()   # a Dutch letter names its step in Dutch
        pool = Pool()
        Communication = pool.get('payt.communication')
        Attention = pool.get('payt.attention')
        address = {'street': 'Dorpsstraat 1', 'postal_code': '1234 AB',
            'city': 'Zwolle', 'country': 'NL'}
        administration = self._administration(['letter'], [
                debtor('TWO', **address), debtor('ONE', **address),
                debtor('NOWHERE')],
            [item('A1', 'TWO', TODAY - days(7)),
                item('A2', 'TWO', TODAY - days(8), amount='50.00'),
                item('B', 'ONE', TODAY - days(7)),
                item('C', 'NOWHERE', TODAY - days(7))], name="Post BV")
        self.assertEqual(Communication.send_pending(administration), 3)
        letters = self._communications(administration, 'letter')
        by_item = {c.item.external_id: c for c in letters}
        self.assertEqual(by_item['A1'].letter_key, by_item['A2'].letter_key)
        self.assertNotEqual(by_item['A1'].letter_key, by_item['B'].letter_key)
        self.assertEqual(by_item['C'].error, "The debtor has no postal address")
        ours = [l for l in self.printmail.letters.values()
            if l['reference'] in {by_item['A1'].letter_key,
                by_item['B'].letter_key}]
        self.assertEqual(len(ours), 2)
        two = next(l for l in ours
            if l['reference'] == by_item['A1'].letter_key)
        text = ''.join(page.extract_text()
            for page in PdfReader(io.BytesIO(two['pdf'])).pages)
        self.assertIn('F-A1', text)
        self.assertIn('F-A2', text)
        self.assertIn('Eerste herinnering', text)
        self.assertEqual(two['recipient']['city'], 'Zwolle')

        # Sent again, as after a crash before the commit: the provider
        # answers with the original letter and prints nothing.
        printed = len(self.printmail.printed)
        Communication.write(letters[:2], {'state': 'pending'})
        Communication.send_pending(administration)
        self.assertEqual(len(self.printmail.printed), printed)
        self.assertEqual(Communication(by_item['A1'].id).provider_id,
            two['id'])

        # printed, posted, delivered for each letter, signed.
        apply_callbacks(self.receiver.new(6))
        self.assertEqual(Communication(by_item['A2'].id).state, 'delivered')
        self.printmail.control_return_letter(id=two['id'],
            reason="Verhuisd, adres onbekend")
        apply_callbacks(self.receiver.new(1))
        for name in ['A1', 'A2']:
            returned = Communication(by_item[name].id)
            self.assertEqual(returned.state, 'returned')
            self.assertEqual(returned.error, "Verhuisd, adres onbekend")
        attention, = Attention.search([
                ('administration', '=', administration.id),
                ('reason', '=', 'letter_returned'),
                ('item', '=', by_item['A1'].item.id)])
        self.assertEqual(Communication(by_item['B'].id).state, 'delivered')

        # A forged webhook is refused.
        self.assertFalse(PrintMailProvider().verify(
                b'{"status": "returned"}', {'X-Signature': 'forged',
                    'X-Signature-Timestamp': str(int(time.time()))}, {}))

    @with_transaction()
    def test_letters_posted_in_house_as_one_pdf(self):
        "Clients who post letters themselves download the day's batch"
        pool = Pool()
        Communication = pool.get('payt.communication')
        Administration = pool.get('payt.administration')
        address = {'street': 'Kerkstraat 2', 'postal_code': '8011 AA',
            'city': 'Zwolle'}
        administration = create_administration("Zelf Posten BV")
        Administration.write([administration],
            {'letters_self_posted': True})
        Step = pool.get('payt.flow.step')
        first, = [s for s in administration.flow.steps if s.lead_days == 7]
        Step.write([first], {'channels': ['letter']})
        Administration.import_batch(administration.id, {
                'debtors': [debtor('X', **address), debtor('Y', **address)],
                'items': [item('X1', 'X', TODAY - days(7)),
                    item('X2', 'X', TODAY - days(9)),
                    item('Y1', 'Y', TODAY - days(7))]})
        pool.get('payt.run').execute(administration, TODAY)
        printed = len(self.printmail.printed)
        Communication.send_pending(administration)
        self.assertEqual(len(self.printmail.printed), printed)
        letters = self._communications(administration, 'letter')
        self.assertEqual({c.state for c in letters}, {'queued'})
        count, pdf = Communication.letter_batch(administration, TODAY)
        self.assertEqual(count, 2)
        reader = PdfReader(io.BytesIO(pdf))
        self.assertEqual(len(reader.pages), 2)
        self.assertEqual({Communication(c.id).state for c in letters},
            {'sent'})

    @with_transaction()
    def test_cm_claim_is_not_resent_until_reconciled(self):
        """CM has no idempotency key: a claimed SMS is left alone while its
        status report may still come, and settled by that report"""
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = self._administration(['sms'],
            [debtor('M', phone='0612345671')],
            [item('A', 'M', TODAY - days(7))], name="Claim BV")
        ids = Communication.claim(administration)
        communication, = Communication.browse(ids)
        self.assertTrue(communication.attempt_at)
        # A sender killed here: the next one leaves it alone for now.
        before = len(self.cm.messages)
        self.assertEqual(Communication.send_pending(administration), 0)
        self.assertEqual(len(self.cm.messages), before)
        # CM's report for our reference settles it without a resend.
        Communication.apply_reports('cm', CMProvider().parse_callback(
                json.dumps({'messages': {'msg': {
                                'reference': communication.idempotency_key,
                                'status': {'code': '2'}}}}).encode(),
                {}, {}))
        self.assertEqual(Communication(communication.id).state, 'delivered')
        # With no report after the grace time it is sent (once) again.
        Communication.write([communication], {'state': 'pending'})
        config.set(SECTION, 'reconcile_seconds', '0')
        try:
            self.assertEqual(Communication.send_pending(administration), 1)
        finally:
            config.set(SECTION, 'reconcile_seconds', '600')
        self.assertEqual(len(self.cm.messages), before + 1)

    def _cm_report(self, key, code='2'):
        return CMProvider().parse_callback(json.dumps({'messages': {'msg': {
                            'reference': key,
                            'status': {'code': code}}}}).encode(), {}, {})

    def _printmail_report(self, key, status='delivered'):
        return PrintMailProvider().parse_callback(json.dumps(
                {'reference': key, 'status': status}).encode(), {}, {})

    @with_transaction()
    def test_report_only_settles_its_providers_channels(self):
        """A CM report never touches an email or a letter, a print-and-mail
        report never an SMS, whatever reference they carry"""
        pool = Pool()
        Communication = pool.get('payt.communication')
        address = {'street': 'Dorpsstraat 1', 'city': 'Zwolle'}
        administration = self._administration(['email', 'sms', 'letter'],
            [debtor('ALL', phone='0612345672', **address)],
            [item('A', 'ALL', TODAY - days(7))], name="Gebonden BV")
        email, = self._communications(administration, 'email')
        # Sent by SMTP (there is no SMTP server in this test case).
        key = Communication.new_reference()
        Communication.write([email], {'state': 'sent', 'provider': 'smtp',
                'idempotency_key': key, 'message_id': '<%s@x>' % key})
        Communication.send_pending(administration)
        sms, = self._communications(administration, 'sms')
        letter, = self._communications(administration, 'letter')
        self.assertEqual((email.state, sms.state, letter.state),
            ('sent', 'queued', 'queued'))
        for key in [email.idempotency_key, letter.idempotency_key,
                letter.letter_key]:
            self.assertEqual(Communication.apply_reports('cm',
                    self._cm_report(key)), [])
        for key in [sms.idempotency_key, email.idempotency_key]:
            self.assertEqual(Communication.apply_reports('printmail',
                    self._printmail_report(key)), [])
        self.assertEqual([Communication(c.id).state
                for c in [email, sms, letter]], ['sent', 'queued', 'queued'])
        # Each provider's own report does settle its own.
        self.assertEqual(Communication.apply_reports('cm',
                self._cm_report(sms.idempotency_key)), [sms])
        self.assertEqual(Communication.apply_reports('printmail',
                self._printmail_report(letter.letter_key)), [letter])

    @with_transaction()
    def test_report_for_a_letter_not_handed_over_refused(self):
        """A letter group not yet posted, or posted in-house, cannot be
        marked delivered by a print-and-mail report"""
        pool = Pool()
        Communication = pool.get('payt.communication')
        Administration = pool.get('payt.administration')
        address = {'street': 'Dorpsstraat 1', 'city': 'Zwolle'}
        administration = self._administration(['letter'],
            [debtor('P', **address)], [item('A', 'P', TODAY - days(7))],
            name="Niet Gepost BV")
        letter, = self._communications(administration, 'letter')
        # Not claimed: it has no key yet; give it one as an old run did.
        Communication.write([letter], {'letter_key': 'guessed-key',
                'idempotency_key': 'guessed-key'})
        self.assertEqual(Communication.apply_reports('printmail',
                self._printmail_report('guessed-key')), [])
        self.assertEqual(Communication(letter.id).state, 'pending')
        # Posted in-house: not the provider's either.
        Administration.write([administration], {'letters_self_posted': True})
        Communication.send_pending(administration)
        self.assertEqual(Communication(letter.id).provider, 'self')
        self.assertEqual(Communication.apply_reports('printmail',
                self._printmail_report(letter.letter_key)), [])
        self.assertEqual(Communication(letter.id).state, 'queued')

    def test_callbacks_refused_without_secret(self):
        "No secret configured, a wrong one or a stale signature: refused"
        body = b'{"reference": "x", "status": "delivered"}'
        now = int(time.time())
        signed = sign(WEBHOOK_SECRET, body, now)
        self.assertTrue(PrintMailProvider().verify(body, signed, {}))
        for headers in [{}, sign('wrong', body, now),
                sign(WEBHOOK_SECRET, body, now - 3600),
                dict(signed, **{'X-Signature-Timestamp': str(now + 1)})]:
            self.assertFalse(PrintMailProvider().verify(body, headers, {}))
        self.assertTrue(CMProvider().verify(b'', {},
                {'token': CALLBACK_TOKEN}))
        for query in [{}, {'token': ''}, {'token': 'wrong'}]:
            self.assertFalse(CMProvider().verify(b'', {}, query))
        with config_set(SECTION, 'cm_callback_secret', ''), \
                config_set(SECTION, 'printmail_secret', ''):
            self.assertFalse(CMProvider().verify(b'', {}, {'token': ''}))
            self.assertFalse(PrintMailProvider().verify(body,
                    sign('', body, now), {}))

    @with_transaction()
    def test_references_are_random_and_kept(self):
        "References name nothing guessable; a resend keeps the same key"
        Communication = Pool().get('payt.communication')
        keys = {Communication.new_reference() for _ in range(100)}
        self.assertEqual(len(keys), 100)
        for key in keys:
            self.assertRegex(key, r'^[A-Za-z0-9_-]{24}$')
        communication = Communication(idempotency_key='kept')
        self.assertEqual(communication.get_idempotency_key(), 'kept')


    @with_transaction()
    def test_tokens_in_bodies_stored_earlier_are_redacted(self):
        "Updating the module removes portal tokens from stored bodies"
        Communication = Pool().get('payt.communication')
        administration = self._administration(['sms'],
            [debtor('OLD', phone='0612345673')],
            [item('A', 'OLD', TODAY - days(7))], name="Oud BV")
        communication, = self._communications(administration, 'sms')
        token = 'T' * 43
        Communication.write([communication], {'body': 'Zie '
                'http://x/db/payt/portal/%s en betaal.' % token})
        Communication._redact_stored_tokens()
        invalidate_caches()
        body = Communication(communication.id).body
        self.assertNotIn(token, body)
        self.assertEqual(body,
            'Zie http://x/db/payt/portal/[personal-link] en betaal.')


class config_set:
    "A setting changed for the duration of a with block."

    def __init__(self, section, name, value):
        self.section, self.name, self.value = section, name, value

    def __enter__(self):
        if not config.has_section(self.section):
            config.add_section(self.section)
        self.old = config.get(self.section, self.name)
        config.set(self.section, self.name, self.value)

    def __exit__(self, *exc):
        if self.old is None:
            config.remove_option(self.section, self.name)
        else:
            config.set(self.section, self.name, self.old)


class Mailboxes:
    """An SMTP server that accepts mail for example.com and bounces mail
    for nowhere.example with a DSN (RFC 3464) to the sender's bounce
    mailbox, a second SMTP server."""

    def __init__(self):
        self.delivered, self.bounces = [], []
        mailboxes = self

        class Bouncer:
            async def handle_DATA(self, server, session, envelope):
                message = email.message_from_bytes(
                    envelope.content, policy=email.policy.default)
                for rcpt in envelope.rcpt_tos:
                    if rcpt.endswith('@nowhere.example'):
                        threading.Thread(target=mailboxes.bounce,
                            args=(envelope.mail_from, rcpt, message),
                            daemon=True).start()
                    else:
                        mailboxes.delivered.append((rcpt, message))
                return '250 OK'

        class Keep:
            async def handle_DATA(self, server, session, envelope):
                mailboxes.bounces.append(envelope.content)
                return '250 OK'
        self.smtp = Controller(Bouncer(), hostname='127.0.0.1',
            port=free_port())
        self.bounce_box = Controller(Keep(), hostname='127.0.0.1',
            port=free_port())
        self.smtp.start()
        self.bounce_box.start()

    def bounce(self, mail_from, rcpt, original):
        "A DSN as an MTA writes it: report, status, original headers."
        headers = ''.join('%s: %s\r\n' % (k, v)
            for k, v in original.items())
        dsn = (
            "From: MAILER-DAEMON@mx.nowhere.example\r\n"
            "To: %(to)s\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: multipart/report; report-type=delivery-status;"
            " boundary=\"BOUNDARY\"\r\n\r\n"
            "--BOUNDARY\r\n"
            "Content-Type: text/plain\r\n\r\n"
            "Your message could not be delivered.\r\n\r\n"
            "--BOUNDARY\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.nowhere.example\r\n\r\n"
            "Final-Recipient: rfc822; %(rcpt)s\r\n"
            "Action: failed\r\n"
            "Status: 5.1.1\r\n"
            "Diagnostic-Code: smtp; 550 5.1.1 <%(rcpt)s>: Recipient address"
            " rejected: User unknown\r\n\r\n"
            "--BOUNDARY\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n"
            "%(headers)s\r\n"
            "--BOUNDARY--\r\n") % {'to': mail_from, 'rcpt': rcpt,
            'headers': headers}
        with smtplib.SMTP('127.0.0.1', self.bounce_box.port) as client:
            client.sendmail('', [mail_from], dsn.encode())

    def stop(self):
        self.smtp.stop()
        self.bounce_box.stop()


class EmailChannelTestCase(unittest.TestCase):
    "Email: Message-ID, invoice PDF, bounces and delivery notifications"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')
        cls.mail = Mailboxes()
        cls.previous = config.get('email', 'uri')
        config.set('email', 'uri', 'smtp://127.0.0.1:%s' % cls.mail.smtp.port)
        config.set('email', 'from', 'debiteuren@payt.example')

    @classmethod
    def tearDownClass(cls):
        cls.mail.stop()
        config.set('email', 'uri', cls.previous)
        super().tearDownClass()

    @with_transaction()
    def test_bounce_marks_undeliverable_and_raises_attention(self):
        "A DSN names the Message-ID: failed, attention, timeline"
        pool = Pool()
        Administration = pool.get('payt.administration')
        Communication = pool.get('payt.communication')
        Attention = pool.get('payt.attention')
        Attachment = pool.get('ir.attachment')
        transaction = Transaction()
        administration = create_administration("Bounce BV")
        Administration.import_batch(administration.id, {
                'debtors': [debtor('OK'),
                    debtor('BAD', email='nobody@nowhere.example')],
                'items': [item('A', 'OK', TODAY - days(7)),
                    item('B', 'BAD', TODAY - days(7))]})
        pool.get('payt.run').execute(administration, TODAY)
        items = {i.external_id: i for i in pool.get('payt.item').search([
                    ('administration', '=', administration.id)])}
        Attachment.create([{'resource': str(items['A']),
                    'name': 'F-A.pdf', 'data': b'%PDF-1.4 invoice A'}])
        self.assertEqual(Communication.send_pending(administration), 2)
        transaction.commit()
        try:
            deadline = time.monotonic() + 20
            while (not self.mail.bounces or not self.mail.delivered) and (
                    time.monotonic() < deadline):
                time.sleep(0.05)
            (rcpt, delivered), = [d for d in self.mail.delivered
                if d[0] == 'debtor-OK@example.com']
            communication, = Communication.search([
                    ('item', '=', items['A'].id), ('channel', '=', 'email')])
            self.assertEqual(delivered['Message-ID'],
                communication.message_id)
            self.assertIn(communication.idempotency_key,
                communication.message_id)
            pdf, = [p for p in delivered.iter_attachments()
                if p.get_content_type() == 'application/pdf']
            self.assertEqual(pdf.get_filename(), 'F-A.pdf')
            self.assertEqual(pdf.get_content(), b'%PDF-1.4 invoice A')

            bounce, = self.mail.bounces
            found, = Communication.process_bounce(bounce)
            self.assertEqual(found.item.external_id, 'B')
            self.assertEqual(found.state, 'failed')
            self.assertIn('User unknown', found.error)
            self.assertIn('bounced', [e.kind for e in found.item.events])
            attention, = Attention.search([
                    ('administration', '=', administration.id),
                    ('reason', '=', 'email_undeliverable')])
            self.assertEqual(attention.item, found.item)
            # The same bounce again changes nothing.
            Communication.process_bounce(bounce)
            self.assertEqual(Attention.search_count([
                        ('reason', '=', 'email_undeliverable'),
                        ('administration', '=', administration.id)]), 1)

            # A success DSN marks the other one delivered.
            report = bounce.replace(b'Action: failed', b'Action: delivered'
                ).replace(b'nobody@nowhere.example', b'debtor-OK@example.com')
            report = report.replace(found.message_id.encode(),
                communication.message_id.encode())
            delivered_now, = Communication.process_bounce(report)
            self.assertEqual(delivered_now.state, 'delivered')
        finally:
            Administration.delete([Administration(administration.id)])
            transaction.commit()
