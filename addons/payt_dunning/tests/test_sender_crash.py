# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The sender killed mid-batch and restarted delivers each communication
once: SMS through CM (which has no idempotency key) and letters through
print and mail (which has), with the status reports coming back over real
sockets to a real trytond server's callback route."""
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import unittest

from payt_hub.simulators.cm import PRODUCT_TOKEN, CMSimulator
from payt_hub.simulators.printmail import (
    API_KEY, WEBHOOK_SECRET, PrintMailSimulator)

from .test_server import ADMINISTRATION, BIN, SETUP, Database, free_port

TOKEN = 'crash-test-callback-token'
RECONCILE = 2
DEBTORS, ITEMS = 30, 60
CHANNELS = '''
Administration = pool.get('payt.administration')
Step = pool.get('payt.flow.step')
administration, = Administration.search([])
step, = [s for s in administration.flow.steps if s.lead_days == 7]
Step.write([step], {'channels': ['sms', 'letter']})
'''


def batch():
    due = (datetime.date.today() - datetime.timedelta(days=8)).isoformat()
    return {
        'debtors': [{'external_id': 'D%d' % i, 'name': 'Debtor %d' % i,
                'phone': '06%08d' % (20000000 + i),
                'street': 'Dorpsstraat %d' % i, 'postal_code': '8011 AB',
                'city': 'Zwolle'} for i in range(DEBTORS)],
        'items': [{'external_id': 'I%d' % i, 'debtor': 'D%d' % (i % DEBTORS),
                'number': 'F-%d' % i, 'amount': '100.00',
                'open_amount': '100.00', 'due_date': due}
            for i in range(ITEMS)]}


STATES = '''
import json
Communication = pool.get('payt.communication')
print(json.dumps([[c.channel, c.state, c.idempotency_key, c.letter_key,
        c.provider_id] for c in Communication.search([])]))
'''


class SenderCrashTestCase(unittest.TestCase):
    "A sender killed mid-batch"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.database = Database()
        cls.database.python(SETUP)
        cls.database.python(ADMINISTRATION % "Sender BV")
        cls.database.python(CHANNELS)
        path = os.path.join(cls.database.folder, 'batch.json')
        with open(path, 'w') as f:
            json.dump(batch(), f)
        cls.database.payt('import', '-d', cls.database.name,
            '--administration', 'Sender BV', path)
        cls.database.payt('run', '-d', cls.database.name, '--no-send')
        cls.port = free_port()
        callback = 'http://127.0.0.1:%s/%s/payt/callback' % (
            cls.port, cls.database.name)
        cls.cm = CMSimulator(
            dlr_url=callback + '/cm?token=' + TOKEN).start()
        cls.printmail = PrintMailSimulator().start()
        cls.settings = {
            'TRYTOND_PAYT_CHANNELS__CM_URL': cls.cm.url,
            'TRYTOND_PAYT_CHANNELS__CM_VOICE_URL': cls.cm.url,
            'TRYTOND_PAYT_CHANNELS__CM_TOKEN': PRODUCT_TOKEN,
            'TRYTOND_PAYT_CHANNELS__PRINTMAIL_URL': cls.printmail.url,
            'TRYTOND_PAYT_CHANNELS__PRINTMAIL_KEY': API_KEY,
            'TRYTOND_PAYT_CHANNELS__PRINTMAIL_SECRET': WEBHOOK_SECRET,
            'TRYTOND_PAYT_CHANNELS__CALLBACK_URL': callback,
            'TRYTOND_PAYT_CHANNELS__CM_CALLBACK_SECRET': TOKEN,
            'TRYTOND_PAYT_CHANNELS__RECONCILE_SECONDS': str(RECONCILE),
            'TRYTOND_DATABASE__RETRY': '20',
            }
        cls.server = subprocess.Popen([os.path.join(BIN, 'trytond'),
                '-d', cls.database.name],
            env=dict(cls.database.env, **cls.settings,
                TRYTOND_WEB__LISTEN='127.0.0.1:%s' % cls.port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket
        for _ in range(150):
            try:
                socket.create_connection(('127.0.0.1', cls.port), 1).close()
                break
            except OSError:
                time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(10)
        cls.cm.stop()
        cls.printmail.stop()
        cls.database.drop()
        super().tearDownClass()

    def _sender(self):
        return subprocess.Popen([sys.executable, '-c',
                'import sys; from trytond.modules.payt_dunning.channel '
                'import main; sys.exit(main())',
                '-d', self.database.name, '--batch-size', '4'],
            env=dict(self.database.env, **self.settings),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def _states(self):
        return json.loads(self.database.python(STATES).strip().splitlines(
                )[-1])

    def test_killed_sender_delivers_each_communication_once(self):
        "Kill the sender mid-batch three times; each message goes once"
        rng = random.Random(6)
        kills = 0
        for attempt in range(3):
            sender = self._sender()
            lines = []
            reader = threading.Thread(target=lambda: lines.extend(
                    sender.stdout), daemon=True)
            reader.start()
            target = rng.randrange(3, 25)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and sender.poll() is None:
                progress = [int(l.split()[1]) for l in list(lines)
                    if l.startswith('delivered')]
                if progress and progress[-1] >= target:
                    break
                time.sleep(0.01)
            if sender.poll() is None:
                sender.send_signal(signal.SIGKILL)
                kills += 1
            sender.wait(30)
        self.assertGreater(kills, 0, "the sender was never caught mid-batch")
        # Restart until nothing is left: claims of killed senders are left
        # alone for RECONCILE seconds, time for CM's reports to settle them.
        for _ in range(5):
            time.sleep(RECONCILE + 0.5)
            result = self._sender()
            out, err = result.communicate(timeout=300)
            self.assertEqual(result.returncode, 0, err)
            states = self._states()
            if not [s for s in states if s[1] == 'pending']:
                break
        # The reports and webhooks land.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = self._states()
            if all(s[1] == 'delivered' for s in states):
                break
            time.sleep(0.5)
        sms = [s for s in states if s[0] == 'sms']
        letters = [s for s in states if s[0] == 'letter']
        self.assertEqual(len(sms), ITEMS)
        self.assertEqual(len(letters), ITEMS)
        lost = [r for r in self.cm.report_results
            + self.printmail.webhook_results if r != 200]
        self.assertEqual({s[1] for s in states}, {'delivered'},
            (lost, [s for s in states if s[1] != 'delivered']))

        # CM received each SMS exactly once.
        references = [m['reference'] for m in self.cm.messages]
        self.assertEqual(sorted(references), sorted(s[2] for s in sms))
        # One letter per debtor, each printed once.
        letter_keys = {s[3] for s in letters}
        self.assertEqual(len(letter_keys), DEBTORS)
        printed = [self.printmail.letters[i]['reference']
            for i in self.printmail.printed]
        self.assertEqual(sorted(printed), sorted(letter_keys))
        self.assertEqual({s[4] for s in letters},
            set(self.printmail.printed))


MAILED = '''
import json
Communication = pool.get('payt.communication')
print(json.dumps([[c.state, c.message_id] for c in Communication.search([
        ('channel', '=', 'email')])]))
'''


class SlowMailServer:
    """An aiosmtpd handler that takes its time over each message and kills
    the sender at a chosen point of the conversation: at MAIL FROM (nothing
    handed over yet), during DATA (the message not accepted), or just after
    it answered 250 (accepted, not yet recorded as sent)."""

    def __init__(self, delay=0.05):
        self.delay = delay
        self.accepted = []
        self.victim = None          # (pid, point, after how many messages)

    def _kill(self, point):
        if self.victim and self.victim[1] == point and (
                len(self.accepted) >= self.victim[2]):
            pid, self.victim = self.victim[0], None
            os.kill(pid, signal.SIGKILL)
            return True
        return False

    async def handle_MAIL(self, server, session, envelope, address, options):
        self._kill('mail')
        envelope.mail_from = address
        return '250 OK'

    async def handle_DATA(self, server, session, envelope):
        import asyncio
        import email
        import email.policy
        await asyncio.sleep(self.delay)
        if self._kill('data'):
            return '451 Sender gone'
        message = email.message_from_bytes(envelope.content,
            policy=email.policy.default)
        self.accepted.append(message['Message-ID'])
        if self.victim and self.victim[1] == 'accepted':
            # Killed once the answer is on its way, before the sender
            # records the message as sent.
            asyncio.get_running_loop().call_soon(self._kill, 'accepted')
        return '250 OK'


class EmailSenderCrashTestCase(unittest.TestCase):
    "A sender killed at each step of handing emails to a slow mail server"

    @classmethod
    def setUpClass(cls):
        from aiosmtpd.controller import Controller
        super().setUpClass()
        cls.database = Database()
        cls.database.python(SETUP)
        cls.database.python(ADMINISTRATION % "Mail Crash BV")
        due = (datetime.date.today() - datetime.timedelta(days=8)).isoformat()
        path = os.path.join(cls.database.folder, 'batch.json')
        with open(path, 'w') as f:
            json.dump({
                    'debtors': [{'external_id': 'D%d' % i,
                            'name': 'Debtor %d' % i,
                            'email': 'd%d@example.com' % i}
                        for i in range(DEBTORS)],
                    'items': [{'external_id': 'I%d' % i,
                            'debtor': 'D%d' % (i % DEBTORS),
                            'number': 'F-%d' % i, 'amount': '100.00',
                            'open_amount': '100.00', 'due_date': due}
                        for i in range(ITEMS)]}, f)
        cls.database.payt('import', '-d', cls.database.name,
            '--administration', 'Mail Crash BV', path)
        cls.database.payt('run', '-d', cls.database.name, '--no-send')
        cls.mail = SlowMailServer()
        cls.smtp = Controller(cls.mail, hostname='127.0.0.1',
            port=free_port())
        cls.smtp.start()

    @classmethod
    def tearDownClass(cls):
        cls.smtp.stop()
        cls.database.drop()
        super().tearDownClass()

    def _sender(self):
        return subprocess.Popen([sys.executable, '-c',
                'import sys; from trytond.modules.payt_dunning.channel '
                'import main; sys.exit(main())',
                '-d', self.database.name, '--batch-size', '4'],
            env=dict(self.database.env, TRYTOND_EMAIL__URI='smtp://'
                '127.0.0.1:%s' % self.smtp.port,
                TRYTOND_DATABASE__RETRY='20'),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def test_killed_sender_loses_no_email(self):
        """Killed before, during and after the mail server accepted an
        email: each arrives, repeats carry the first one's Message-ID"""
        kills = []
        for point, after in [('mail', 2), ('data', 5), ('accepted', 8),
                ('accepted', 11)]:
            sender = self._sender()
            self.mail.victim = (sender.pid, point, after)
            sender.wait(120)
            kills.append(sender.returncode == -signal.SIGKILL)
        self.mail.victim = None
        self.assertEqual(kills, [True] * 4,
            "the sender was killed at every point")
        finished = self._sender()
        _, err = finished.communicate(timeout=300)
        self.assertEqual(finished.returncode, 0, err)

        mailed = json.loads(self.database.python(MAILED).strip(
                ).splitlines()[-1])
        # One bundled email per debtor, each recorded as sent.
        self.assertEqual(len({m for _, m in mailed}), DEBTORS)
        self.assertEqual({s for s, _ in mailed}, {'sent'})
        # Every one arrived, under the Message-ID on record.
        self.assertEqual(set(self.mail.accepted), {m for _, m in mailed})
        # Only what a killed sender had not recorded yet went again: at
        # most its batch (4) per kill.
        repeats = len(self.mail.accepted) - DEBTORS
        self.assertLessEqual(repeats, 4 * len(kills), self.mail.accepted)
