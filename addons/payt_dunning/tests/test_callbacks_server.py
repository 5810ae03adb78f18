# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Attacks on the callbacks and the secrets, over HTTP and JSON-RPC against
a running trytond (the `trytond` command, as deployed), on a database of
its own (SQLite file or PostgreSQL); checked afterwards as admin that
nothing changed.

- anonymous GET and POST callbacks with no, an empty or a wrong secret, and
  every callback while the installation set no secret: 403, nothing changed;
- a CM (SMS) report naming an email's reference (also another company's),
  a print-and-mail report for a letter not handed over: nothing changed;
- anna (back office of company 1) reads the Mollie key, a portal link's
  secret, communication bodies: no secret, no working token;
- the server's log (request and RPC log, at INFO) holds no secret, no
  token, and not their first 17 characters."""
import base64
import json
import os
import subprocess
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

from payt_hub.simulators.printmail import sign

from .test_server import BIN, PASSWORD, SETUP, Database, free_port

CM_SECRET = 'cm-callback-secret-0123456789abcdef'
PRINTMAIL_SECRET = 'printmail-webhook-secret-0123456789'
BOUNCE_SECRET = 'bounce-secret-0123456789abcdefghij'
MOLLIE_KEY = 'live_mollie0secret0key0abcdefghijklmnop'
ANNA_PASSWORD = 'anna-test-2026-password'

DATA = '''
import datetime
Party = pool.get('party.party'); Company = pool.get('company.company')
Currency = pool.get('currency.currency'); User = pool.get('res.user')
Administration = pool.get('payt.administration')
Communication = pool.get('payt.communication')
Step = pool.get('payt.flow.step'); Link = pool.get('payt.portal.link')
ModelData = pool.get('ir.model.data')
euro, = Currency.search([('code', '=', 'EUR')])
admin, = User.search([('login', '=', 'admin')])
due = (datetime.date.today() - datetime.timedelta(days=8)).isoformat()
ids = {}
for name in ['Ours', 'Theirs']:
    party, = Party.create([{'name': name + ' BV'}])
    company, = Company.create([{'party': party.id, 'currency': euro.id}])
    User.write([admin], {'companies': [('add', [company.id])],
        'company': company.id})
    administration, = Administration.create([{'company': company.id,
        'mollie_api_key': 'test_%s0000000000000000000000' % name.lower()}])
    step, = [s for s in administration.flow.steps if s.lead_days == 7]
    Step.write([step], {'channels': ['email', 'sms', 'letter']})
    Administration.import_batch(administration.id, {
        'debtors': [{'external_id': 'D', 'name': 'Debtor ' + name,
            'email': 'd@example.com', 'phone': '0612345678',
            'street': 'Dorpsstraat 1', 'city': 'Zwolle'}],
        'items': [{'external_id': 'I', 'debtor': 'D', 'amount': '100.00',
            'open_amount': '100.00', 'due_date': due}]})
    pool.get('payt.run').execute(administration, datetime.date.today())
    found = {c.channel: c for c in Communication.search([
        ('item.administration', '=', administration.id)])}
    now = datetime.datetime.now()
    # The email went by SMTP, the SMS to CM; the letter was not posted.
    Communication.write([found['email']], {'state': 'sent',
        'provider': 'smtp', 'idempotency_key': name + 'EmailKey',
        'message_id': '<%sEmailKey@payt.example>' % name, 'sent_at': now,
        'body': 'Betaal via http://x/db/payt/portal/[personal-link]'})
    Communication.write([found['sms']], {'state': 'queued',
        'provider': 'cm', 'idempotency_key': name + 'SmsKey',
        'attempt_at': now})
    Communication.write([found['letter']], {
        'idempotency_key': name + 'LetterKey',
        'letter_key': name + 'LetterKey'})
    link, token = Link.issue(found['email'].item.debtor)
    ids[name] = {'administration': administration.id,
        'company': company.id, 'token': token, 'link': link.id,
        **{c: found[c].id for c in found}}
User.write([admin], {'company': ids['Ours']['company']})
anna, = User.create([{'name': 'Anna', 'login': 'anna',
    'password': ANNA_PASSWORD,
    'companies': [('add', [ids['Ours']['company']])],
    'company': ids['Ours']['company'],
    'groups': [('add', [ModelData.get_id('payt_dunning', 'group_payt')])]}])
print(json.dumps(ids))
'''

STATE = '''
Communication = pool.get('payt.communication')
OptOut = pool.get('payt.channel.optout')
Event = pool.get('payt.event')
print(json.dumps({
    'communications': sorted([c.id, c.channel, c.state, c.provider,
        c.error, str(c.delivered_at)] for c in Communication.search([])),
    'optouts': OptOut.search([], count=True),
    'events': Event.search([], count=True)}))
'''


class CallbackServerTestCase(unittest.TestCase):
    "Callbacks and secrets attacked over HTTP"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.database = Database()
        cls.database.python(SETUP)
        out = cls.database.python(
            DATA.replace('ANNA_PASSWORD', repr(ANNA_PASSWORD)))
        cls.ids = json.loads(out.strip().splitlines()[-1])

    @classmethod
    def tearDownClass(cls):
        cls.database.drop()
        super().tearDownClass()

    def start_server(self, secrets=True):
        "trytond serving the database, logging at INFO to a file."
        port = free_port()
        env = dict(self.database.env,
            TRYTOND_WEB__LISTEN='127.0.0.1:%s' % port)
        if secrets:
            env.update({
                    'TRYTOND_PAYT_CHANNELS__CM_CALLBACK_SECRET': CM_SECRET,
                    'TRYTOND_PAYT_CHANNELS__PRINTMAIL_SECRET':
                    PRINTMAIL_SECRET,
                    'TRYTOND_PAYT_CHANNELS__BOUNCE_SECRET': BOUNCE_SECRET,
                    })
        log = open(os.path.join(self.database.folder,
                'server-%s.log' % port), 'w+')
        self.addCleanup(log.close)
        server = subprocess.Popen([os.path.join(BIN, 'trytond'),
                '-d', self.database.name, '-v', '-v'],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(server.wait, 10)
        self.addCleanup(server.terminate)
        for _ in range(150):
            try:
                urllib.request.urlopen('http://127.0.0.1:%s/' % port,
                    timeout=2)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.2)
        self.base = 'http://127.0.0.1:%s/%s' % (port, self.database.name)
        self.log = log
        return port

    def state(self):
        "Everything a callback could change, read as admin."
        return json.loads(self.database.python(STATE).strip().splitlines(
                )[-1])

    def http(self, method, path, body=b'', headers=None, query=None):
        url = '%s/payt/callback/%s' % (self.base, path)
        if query:
            url += '?' + urllib.parse.urlencode(query)
        request = urllib.request.Request(url, method=method,
            data=body if method == 'POST' else None, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b'{}')
        except urllib.error.HTTPError as error:
            return error.code, None

    def cm_report(self, key, code='2'):
        return json.dumps({'messages': {'msg': {'reference': key,
                        'status': {'code': code}}}}).encode()

    def printmail_event(self, key, status='delivered'):
        return json.dumps({'id': 'ltr_x', 'reference': key,
                'status': status}).encode()

    def forged_callbacks(self, token):
        "Every kind of callback, each carrying `token` (None: none)."
        query = {} if token is None else {'token': token}
        letter_key = 'OursLetterKey'
        bounce = (b'From: MAILER-DAEMON@x\r\nX-Failed-Recipients: d@x\r\n\r\n'
            b'Message-ID: <TheirsEmailKey@payt.example>\r\n')
        return [
            ('GET', 'cm', b'', {}, dict(query, statuscode='2',
                    reference='TheirsEmailKey')),
            ('GET', 'cm', b'', {}, dict(query, statuscode='2',
                    reference='OursSmsKey')),
            ('POST', 'cm', self.cm_report('OursSmsKey'),
                {'Content-Type': 'application/json'}, query),
            ('POST', 'cm-inbound', json.dumps({'from': {
                            'number': '0031612345678'},
                        'message': {'text': 'STOP'}}).encode(),
                {'Content-Type': 'application/json'}, query),
            ('POST', 'printmail', self.printmail_event(letter_key),
                {'X-Signature': 'forged', 'X-Signature-Timestamp':
                    str(int(time.time()))}, query),
            ('POST', 'printmail', self.printmail_event(letter_key),
                sign('wrong-secret', self.printmail_event(letter_key)),
                query),
            ('POST', 'bounce', bounce, {}, query),
            ]

    def test_callbacks_refused_when_no_secret_is_set(self):
        "A fresh installation refuses every callback, also with token=''"
        self.start_server(secrets=False)
        before = self.state()
        for token in [None, '', 'anything']:
            for method, path, body, headers, query in self.forged_callbacks(
                    token):
                status, _ = self.http(method, path, body, headers, query)
                self.assertEqual(status, 403, (method, path, token))
        self.assertEqual(self.state(), before)

    def test_forged_and_misdirected_callbacks_change_nothing(self):
        """Wrong secrets are refused; right secrets still never settle what
        was not handed to that provider"""
        self.start_server()
        before = self.state()
        for token in [None, '', 'wrong', CM_SECRET[:-1]]:
            for method, path, body, headers, query in self.forged_callbacks(
                    token):
                status, _ = self.http(method, path, body, headers, query)
                self.assertEqual(status, 403, (method, path, token))
        self.assertEqual(self.state(), before)
        # Verified, but about what the provider was never handed: an SMS
        # report naming an email (ours or another company's), a
        # print-and-mail report for the letter not posted.
        for key in ['OursEmailKey', 'TheirsEmailKey', 'OursLetterKey']:
            status, answer = self.http('GET', 'cm', query={
                    'token': CM_SECRET, 'statuscode': '2',
                    'reference': key})
            self.assertEqual((status, answer), (200, {'updated': 0}), key)
        for key in ['OursLetterKey', 'OursSmsKey', 'OursEmailKey']:
            body = self.printmail_event(key)
            status, answer = self.http('POST', 'printmail', body,
                sign(PRINTMAIL_SECRET, body))
            self.assertEqual((status, answer), (200, {'updated': 0}), key)
        # A stale, correctly signed event (a replay) is refused.
        body = self.printmail_event('OursLetterKey')
        status, _ = self.http('POST', 'printmail', body,
            sign(PRINTMAIL_SECRET, body, time.time() - 3600))
        self.assertEqual(status, 403)
        self.assertEqual(self.state(), before)
        # The SMS handed to CM is settled by CM's verified report.
        status, answer = self.http('POST', 'cm', self.cm_report('OursSmsKey'),
            {'Content-Type': 'application/json'}, {'token': CM_SECRET})
        self.assertEqual((status, answer), (200, {'updated': 1}))
        after = {c[0]: c[2] for c in self.state()['communications']}
        self.assertEqual(after[self.ids['Ours']['sms']], 'delivered')
        self.assertEqual(after[self.ids['Ours']['email']], 'sent')
        self.assertEqual(after[self.ids['Theirs']['email']], 'sent')
        self.assertEqual(after[self.ids['Ours']['letter']], 'pending')
        self.assertSecretsNotLogged('payt/callback/cm?token=***')

    # ------------------------------------------------------------ RPC

    def rpc(self, method, params, login=None, session=None):
        request = urllib.request.Request(self.base + '/rpc/',
            data=json.dumps({'id': 1, 'method': method,
                    'params': params}).encode(),
            headers={'Content-Type': 'application/json'})
        if session:
            request.add_header('Authorization', 'Session ' + base64.b64encode(
                    ('%s:%s:%s' % (login, *session)).encode()).decode())
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def login(self, login, password):
        answer = self.rpc('common.db.login',
            [login, {'password': password}, 'en'])
        session = answer['result'][:2]
        context = self.rpc('model.res.user.get_preferences', [True, {}],
            login, session)['result']
        return lambda method, *args: self.rpc(method,
            list(args) + [context], login, session)

    def test_anna_reads_no_secret_and_no_token(self):
        """The back office reads neither the Mollie key nor a link's secret,
        and finds no working portal token in communications"""
        self.start_server()
        admin = self.login('admin', PASSWORD)
        ours = self.ids['Ours']['administration']
        # The administrator sets the key the way the client does.
        written = admin('model.payt.administration.write', [ours],
            {'mollie_api_key_masked': MOLLIE_KEY})
        self.assertNotIn('error', written, written)
        anna = self.login('anna', ANNA_PASSWORD)
        refused = anna('model.payt.administration.read', [ours],
            ['mollie_api_key'])
        self.assertRefused(refused)
        masked = anna('model.payt.administration.read', [ours],
            ['mollie_api_key_masked'])['result']
        self.assertEqual(masked[0]['mollie_api_key_masked'],
            '*****' + MOLLIE_KEY[-3:])
        refused = anna('model.payt.administration.search',
            [('mollie_api_key', 'like', 'live_%')], 0, None, None)
        self.assertRefused(refused)
        for field in ['secret', 'token_hash']:
            refused = anna('model.payt.portal.link.read',
                [self.ids['Ours']['link']], [field])
            self.assertRefused(refused)
        communications = anna('model.payt.communication.search_read',
            [], 0, None, None, ['body', 'subject'])['result']
        self.assertTrue(communications)
        text = json.dumps(communications)
        self.assertNotIn(self.ids['Ours']['token'], text)
        self.assertNotIn(self.ids['Ours']['token'][:17], text)
        # Her write to the raw key is refused; nothing changed.
        refused = anna('model.payt.administration.write', [ours],
            {'mollie_api_key': 'live_hers'})
        self.assertRefused(refused)
        key = self.database.python(
            "print(pool.get('payt.administration')(%d).mollie_api_key)"
            % ours).strip().splitlines()[-1]
        self.assertEqual(key, MOLLIE_KEY)
        # The portal link with its token, as a debtor opens it.
        urllib.request.urlopen('%s/payt/portal/%s' % (self.base,
                self.ids['Ours']['token']), timeout=30).read()
        # Admin writing the raw field: the RPC log hides that too.
        admin('model.payt.administration.write', [ours],
            {'mollie_api_key': MOLLIE_KEY})
        self.assertSecretsNotLogged('payt/portal/***',
            'payt.administration.write')

    def assertRefused(self, answer):
        "An access error (sent as a UserError), and no result."
        self.assertNotIn('result', answer)
        kind, (message, *_) = answer['error']
        self.assertEqual(kind, 'UserError', answer)
        self.assertIn('not allowed to', message)

    def assertSecretsNotLogged(self, *logged):
        "`logged`: what shows the request and RPC logs were written."
        time.sleep(0.5)
        self.log.flush()
        self.log.seek(0)
        text = self.log.read()
        for line in logged:
            self.assertIn(line, text)
        for secret in [CM_SECRET, PRINTMAIL_SECRET, BOUNCE_SECRET,
                MOLLIE_KEY, self.ids['Ours']['token'],
                self.ids['Theirs']['token']]:
            self.assertNotIn(secret[:17], text)
