# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Company isolation attacked over JSON-RPC against a running server, as
the back-office user `anna` (company "Ours" only, group Debtor Management),
a consultant of both companies and a user without any group.

Every attack must be refused, and afterwards admin (in a separate process)
finds nothing changed. One database and one server for the whole class."""
import base64
import configparser
import datetime
import json
import os
import socket
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from aiosmtpd.controller import Controller

from .test_server import BIN, SETUP, Database, MailSink, free_port

HERE = os.path.dirname(__file__)
DEMO_CONF = os.path.join(HERE, '..', '..', '..', 'etc', 'demo.conf')
USER_PASSWORD = 'payt-isolation-2026'
TODAY = datetime.date.today()


def rpc_date(date):
    "A date as Tryton's JSON-RPC encodes it."
    return {'__class__': 'date', 'year': date.year, 'month': date.month,
        'day': date.day}

# Two companies with their administration, debtors and open items, a case
# of "Theirs" with letters, costs, interest and a payment, a letter of
# "Theirs" waiting to be posted in-house, and the users.
FIXTURE = '''
import datetime
from decimal import Decimal
from trytond.modules.payt_dunning.tests.tools import (
    create_administration, debtor, item)
from trytond.modules.payt_dunning.case import build_cases
today = pool.get('ir.date').today()
Administration = pool.get('payt.administration')
User = pool.get('res.user'); ModelData = pool.get('ir.model.data')
Item = pool.get('payt.item'); Case = pool.get('payt.case')
Communication = pool.get('payt.communication')
PortalLink = pool.get('payt.portal.link')
ours = create_administration("Ours BV", user=False)
theirs = create_administration("Theirs BV", user=False)
old = today - datetime.timedelta(days=90)
for administration, prefix in [(ours, 'O'), (theirs, 'T')]:
    Administration.import_batch(administration.id, {
        'debtors': [debtor(prefix + '1'), debtor(prefix + '2')],
        'items': [item(prefix + 'I1', prefix + '1', old),
            item(prefix + 'I2', prefix + '1', old),
            item(prefix + 'I3', prefix + '2', today)]})
their_items = Item.search([('administration', '=', theirs.id)])
Case.open_for_items([i for i in their_items if i.due_date == old],
    today - datetime.timedelta(days=40))
build_cases(pool, [theirs], today)
step = theirs.flow.steps[0]
letter, = Communication.create([{'company': theirs.company.id,
    'item': their_items[0].id, 'step': step.id, 'channel': 'letter',
    'run_date': today, 'state': 'queued', 'provider': 'self',
    'letter_key': 'theirs-1', 'letter_pdf': b'%PDF-1.4 theirs'}])
our_debtor = [d for d in pool.get('payt.debtor').search(
    [('administration', '=', ours.id)]) if d.external_id == 'O1'][0]
link, _ = PortalLink.issue(our_debtor)
group = lambda name: ModelData.get_id('payt_dunning', name)
users = {}
for login, groups, companies in [
        ('anna', ['group_payt'], [ours]),
        ('consultant', ['group_payt', 'group_payt_consultant'],
            [ours, theirs]),
        ('nobody', [], [ours])]:
    user, = User.create([{'name': login, 'login': login,
        'password': PASSWORD,
        'companies': [('add', [a.company.id for a in companies])],
        'company': companies[0].company.id,
        'groups': [('add', [group(g) for g in groups])]}])
    users[login] = user.id
def ids(model, administration, field='administration'):
    return [r.id for r in pool.get(model).search(
        [(field, '=', administration.id)], order=[('id', 'ASC')])]
print(json.dumps({
    'ours': ours.id, 'theirs': theirs.id,
    'our_items': ids('payt.item', ours), 'their_items': ids('payt.item', theirs),
    'our_debtors': ids('payt.debtor', ours),
    'their_debtors': ids('payt.debtor', theirs),
    'their_cases': ids('payt.case', theirs),
    'their_letter': letter.id, 'our_link': link.id, 'users': users}))
'''

# What an attack could change, read back as admin in a separate process.
STATE = '''
def rows(model, fields):
    return sorted([[r.id] + [str(getattr(r, f)) for f in fields]
        for r in pool.get(model).search([])])
print(json.dumps({
    'pauses': rows('payt.pause', ['administration', 'debtor', 'item']),
    'messages': rows('payt.message', ['debtor', 'body']),
    'links': rows('payt.portal.link', ['debtor', 'administration']),
    'communications': rows('payt.communication', ['state', 'item']),
    'plans': rows('payt.plan', ['debtor', 'state']),
    'items': rows('payt.item', ['state', 'open_amount']),
    'debtors': rows('payt.debtor', ['name', 'email']),
    }))
'''


class IsolationServerTestCase(unittest.TestCase):
    "Attacks on company isolation over JSON-RPC, refused, nothing changed"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.database = Database()
        # The case letters of the fixture leave by email (case_delivery).
        cls.smtp = Controller(MailSink(), hostname='127.0.0.1',
            port=free_port())
        cls.smtp.start()
        cls.database.env['TRYTOND_EMAIL__URI'] = (
            'smtp://127.0.0.1:%s' % cls.smtp.port)
        try:
            cls.database.python(SETUP)
            cls.fixture = json.loads(cls.database.python(
                    'PASSWORD = %r\n' % USER_PASSWORD + FIXTURE).strip()
                .splitlines()[-1])
        except Exception:
            cls.database.drop()
            cls.smtp.stop()
            raise
        cls.port = free_port()
        cls.server = subprocess.Popen(
            [os.path.join(BIN, 'trytond'), '-d', cls.database.name],
            env=dict(cls.database.env, **cls._demo_request_limits(),
                TRYTOND_WEB__LISTEN='127.0.0.1:%s' % cls.port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(150):
            try:
                socket.create_connection(('127.0.0.1', cls.port), 1).close()
                break
            except OSError:
                time.sleep(0.2)
        cls.sessions = {}

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(10)
        cls.database.drop()
        cls.smtp.stop()
        super().tearDownClass()

    @staticmethod
    def _demo_request_limits():
        "The server runs with the request limits the demo ships."
        config = configparser.ConfigParser()
        config.read(DEMO_CONF)
        return {'TRYTOND_REQUEST__%s' % key.upper(): value
            for key, value in config['request'].items()}

    # -- JSON-RPC as a user ---------------------------------------------
    def _post(self, method, params, login=None, data=None):
        body = data if data is not None else json.dumps(
            {'id': 1, 'method': method, 'params': params}).encode()
        request = urllib.request.Request(
            'http://127.0.0.1:%s/%s/rpc/' % (self.port, self.database.name),
            data=body, headers={'Content-Type': 'application/json'})
        if login:
            user_id, key = self._session(login)
            token = base64.b64encode(
                ('%s:%s:%s' % (login, user_id, key)).encode()).decode()
            request.add_header('Authorization', 'Session ' + token)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return {'error': ['HTTP %s' % error.code, error.read()[:200]]}
        except (urllib.error.URLError, ConnectionError) as error:
            # The server may close the connection before a refused body
            # has been sent in full.
            return {'error': ['closed', str(error)]}

    def _session(self, login):
        if login not in self.sessions:
            answer = self._post('common.db.login',
                [login, {'password': USER_PASSWORD}, 'en'])
            self.assertNotIn('error', answer, answer)
            self.sessions[login] = answer['result'][:2]
        return self.sessions[login]

    def _context(self, login, **extra):
        context = self.call(login, 'model.res.user.get_preferences', True)
        context.update(extra)
        return context

    def call(self, login, method, *args):
        answer = self._post(method, list(args) + (
                [{}] if method.endswith('get_preferences') else []), login)
        self.assertNotIn('error', answer, answer)
        return answer['result']

    def refused(self, login, method, *args, context=None):
        "The call fails; returns the error's kind and message."
        context = context if context is not None else self._context(login)
        answer = self._post(method, list(args) + [context], login)
        self.assertIn('error', answer, "%s was accepted: %s" % (
                method, answer))
        kind, detail = answer['error'][0], answer['error'][1]
        message = detail[0] if isinstance(detail, list) else str(detail)
        return kind, message

    def accepted(self, login, method, *args, context=None):
        context = context if context is not None else self._context(login)
        answer = self._post(method, list(args) + [context], login)
        self.assertNotIn('error', answer, answer)
        return answer['result']

    def state(self):
        return json.loads(self.database.python(STATE).strip()
            .splitlines()[-1])

    def wizard(self, login, name, context, steps):
        """Run a wizard as the user: steps are (state, data); returns the
        last answer."""
        session, start, _ = self.accepted(login,
            'wizard.%s.create' % name, context=context)
        result = None
        for state, data in steps:
            result = self.accepted(login, 'wizard.%s.execute' % name,
                session, data, state, context=context)
        return result

    def wizard_refused(self, login, name, context, steps):
        answer = self._post('wizard.%s.create' % name, [context], login)
        if 'error' in answer:
            return answer['error']
        session = answer['result'][0]
        for state, data in steps:
            answer = self._post('wizard.%s.execute' % name,
                [session, data, state, context], login)
            if 'error' in answer:
                return answer['error']
        self.fail("wizard %s was accepted: %s" % (name, answer))

    # -- the attacks ----------------------------------------------------
    def test_pause_with_another_companys_administration(self):
        "A pause of company Ours naming Theirs' administration is refused"
        f = self.fixture
        before = self.state()
        ours = self._context('anna')['company']
        for login in ['anna', 'consultant']:
            self.refused(login, 'model.payt.pause.create', [{
                        'company': ours, 'administration': f['theirs'],
                        'kind': 'stop', 'reason': "Hostile",
                        'start_date': rpc_date(TODAY)}])
        self.assertEqual(self.state()['pauses'], before['pauses'])

    def test_portal_link_pointing_at_another_companys_debtor(self):
        "A portal link of Ours cannot be turned to a debtor of Theirs"
        f = self.fixture
        before = self.state()
        for login in ['anna', 'consultant']:
            self.refused(login, 'model.payt.portal.link.write',
                [f['our_link']], {'debtor': f['their_debtors'][0]})
        _, message = self.refused('consultant',
            'model.payt.portal.link.create', [{
                    'company': self._context('anna')['company'],
                    'administration': f['ours'],
                    'debtor': f['their_debtors'][0],
                    'token_hash': 'x' * 64, 'secret': 'y' * 32,
                    'expires_at': '2099-01-01T00:00:00'}])
        self.assertEqual(self.state()['links'], before['links'])

    def test_message_to_another_companys_debtor(self):
        "A message of Ours addressed to a debtor of Theirs is refused"
        f = self.fixture
        before = self.state()
        ours = self._context('anna')['company']
        for login in ['anna', 'consultant']:
            # The view's domain (debtor of the administration) refuses
            # the plain attempt ...
            self.refused(login, 'model.payt.message.create',
                [{'company': ours, 'administration': f['ours'],
                        'debtor': f['their_debtors'][0],
                        'direction': 'out', 'body': "Pay me"}])
            # ... and the company check the one that satisfies it.
            _, message = self.refused(login, 'model.payt.message.create',
                [{'company': ours, 'administration': f['theirs'],
                        'debtor': f['their_debtors'][0],
                        'direction': 'out', 'body': "Pay me"}])
            self.assertIn('belongs to Theirs BV', message)
        self.assertEqual(self.state()['messages'], before['messages'])

    def test_read_only_fields_are_read_only_on_the_server(self):
        "Import-owned fields and a message's debtor cannot be written"
        f = self.fixture
        before = self.state()
        self.refused('consultant', 'model.payt.debtor.write',
            [f['our_debtors'][0]], {'email': 'attacker@example.com'})
        self.refused('anna', 'model.payt.item.write',
            [f['our_items'][0]], {'open_amount': '0'})
        self.assertEqual(self.state()['debtors'], before['debtors'])
        self.assertEqual(self.state()['items'], before['items'])

    def test_letters_wizard_of_another_company(self):
        "The day's letters of Theirs are refused; Ours' are downloaded"
        f = self.fixture
        before = self.state()
        data = {'start': {'administration': f['theirs'],
                'date': rpc_date(TODAY)}}
        context = self._context('anna')
        error = self.wizard_refused('anna', 'payt.letter.batch', context,
            [('start', {}), ('build', data)])
        self.assertIn('You may not download the letters', error[1][0])
        context = self._context('nobody')
        error = self.wizard_refused('nobody', 'payt.letter.batch', context,
            [('start', {}), ('build', data)])
        self.assertIn('payt.letter.batch', error[1][0])
        self.assertEqual(self.state()['communications'],
            before['communications'])
        result = self.wizard('anna', 'payt.letter.batch',
            self._context('anna'), [('start', {}), ('build', {'start': {
                        'administration': f['ours'],
                        'date': rpc_date(TODAY)}})])
        self.assertEqual(result['view']['state'], 'result')

    def test_export_of_another_companys_case_lines(self):
        "export_data of Theirs' case lines and letters is refused"
        f = self.fixture
        ids = self._their_case_lines()
        self.assertTrue(all(ids.values()), ids)
        for model, record_ids in ids.items():
            _, message = self.refused('anna',
                'model.%s.export_data' % model, record_ids,
                ['id', 'case/rec_name'])
            self.assertIn('You are not allowed to', message)
            self.refused('anna', 'model.%s.read' % model, record_ids,
                ['id'])
            found = self.accepted('anna', 'model.%s.search' % model,
                [], 0, None, None)
            self.assertEqual(found, [], model)
        self.refused('anna', 'model.payt.case.export_data',
            f['their_cases'], ['rec_name'])

    def test_attachments_of_another_company(self):
        "Letter PDFs of Theirs do not show among anna's attachments"
        attachments = json.loads(self.database.python(
                "Attachment = pool.get('ir.attachment')\n"
                "print(json.dumps([a.id for a in Attachment.search("
                "[('resource', 'like', 'payt.%')])]))").strip()
            .splitlines()[-1])
        self.assertTrue(attachments)
        found = self.accepted('anna', 'model.ir.attachment.search',
            [('resource', 'like', 'payt.%')], 0, None, None)
        self.assertEqual(found, [])
        self.refused('anna', 'model.ir.attachment.read', attachments,
            ['name'])
        self.refused('anna', 'model.ir.attachment.export_data',
            attachments, ['name'])

    def _their_case_lines(self):
        return json.loads(self.database.python(
                "print(json.dumps({m: [r.id for r in pool.get(m).search([])]"
                " for m in ['payt.case.letter', 'payt.case.cost',"
                " 'payt.case.interest', 'payt.case.payment']}))").strip()
            .splitlines()[-1])

    def test_wizards_on_another_company_and_without_group(self):
        "Pause, stop, plan and run wizards refuse Theirs' records"
        f = self.fixture
        before = self.state()
        their_item = f['their_items'][0]
        for login in ['anna', 'nobody']:
            for name in ['payt.pause.wizard', 'payt.stop.wizard']:
                context = self._context(login, active_model='payt.item',
                    active_id=their_item, active_ids=[their_item])
                self.wizard_refused(login, name, context, [
                        ('start', {}), ('hold', {'start': {
                                    'reason': "Hostile", 'kind': 'pause'}})])
            context = self._context(login, active_model='payt.item',
                active_id=their_item, active_ids=[their_item])
            self.wizard_refused(login, 'payt.plan.create', context,
                [('start', {})])
        context = self._context('nobody', active_model='payt.item',
            active_id=f['our_items'][0], active_ids=[f['our_items'][0]])
        self.wizard_refused('nobody', 'payt.pause.wizard', context,
            [('start', {})])
        context = self._context('anna', active_model='payt.administration',
            active_id=f['ours'], active_ids=[f['ours']])
        self.wizard_refused('anna', 'payt.run.wizard', context,
            [('start', {}), ('run', {'start': {'date': rpc_date(TODAY)}})])
        after = self.state()
        for key in ['pauses', 'plans', 'communications', 'items']:
            self.assertEqual(after[key], before[key], key)

    def test_back_office_wizards_work_on_own_records(self):
        "anna pauses and stops an item, a debtor, the administration, "
        "and creates a payment plan from an invoice (issue 9)"
        f = self.fixture
        before = len(self.state()['pauses'])
        targets = [('payt.item', f['our_items'][0]),
            ('payt.debtor', f['our_debtors'][1]),
            ('payt.administration', f['ours'])]
        for model, record in targets:
            for name, kind in [('payt.pause.wizard', 'pause'),
                    ('payt.stop.wizard', 'stop')]:
                context = self._context('anna', active_model=model,
                    active_id=record, active_ids=[record])
                self.wizard('anna', name, context, [
                        ('start', {}), ('hold', {'start': {
                                    'reason': "Holiday", 'kind': kind,
                                    'end_date': None}})])
        pauses = self.state()['pauses']
        self.assertEqual(len(pauses), before + 6)
        context = self._context('anna', active_model='payt.item',
            active_id=f['our_items'][1], active_ids=[f['our_items'][1]])
        result = self.wizard('anna', 'payt.plan.create', context, [
                ('start', {}), ('create_', {'start': {
                            'number_of_terms': 2,
                            'start_date': rpc_date(TODAY),
                            'reminder_days': 3,
                            'break_on_missed': False}})])
        self.assertTrue(result['actions'])
        plans = self.state()['plans']
        self.assertEqual(len(plans), 1)
        # The Pauses and Stops list offers no New: the form is read-only.
        access = self.accepted('anna', 'model.ir.model.access.get_access',
            ['payt.pause'])
        self.assertFalse(access['payt.pause']['create'])
        self.assertTrue(access['payt.pause']['read'])

    def test_oversized_rpc_batch_is_refused(self):
        "A 50 MB import batch is refused before it is read"
        f = self.fixture
        before = self.state()['debtors']
        name = 'x' * 100
        debtors = [{'external_id': 'B%d' % i, 'name': name}
            for i in range(50 * 1024 * 1024 // 130)]
        body = json.dumps({'id': 1,
                'method': 'model.payt.administration.import_batch',
                'params': [f['ours'], {'debtors': debtors},
                    self._context('consultant')]}).encode()
        self.assertGreater(len(body), 50 * 1024 * 1024)
        answer = self._post(None, None, 'consultant', data=body)
        # trytond reads the body through a stream limited to the
        # configured size and answers 400 ("Unable to get RPC method")
        # when it is exceeded; werkzeug alone would say 413.
        self.assertIn(answer['error'][0], {'HTTP 400', 'HTTP 413', 'closed'},
            answer)
        self.assertEqual(self.state()['debtors'], before)

    def test_nul_bytes_and_empty_complete_batch(self):
        "NUL in a name is refused; complete without items closes nothing"
        f = self.fixture
        before = self.state()
        kind, message = self.refused('consultant',
            'model.payt.administration.import_batch', f['ours'],
            {'debtors': [{'external_id': 'N1', 'name': "Evil\x00Name"}]})
        self.assertIn('debtor "N1", field "name"', message)
        kind, message = self.refused('consultant',
            'model.payt.administration.import_batch', f['ours'],
            {'complete': True})
        self.assertIn('must list the items it keeps', message)
        kind, message = self.refused('consultant',
            'model.payt.administration.import_batch', f['ours'],
            {'complete': True, 'close_count': 1})
        self.assertIn('confirms closing 1 items', message)
        after = self.state()
        self.assertEqual(after['items'], before['items'])
        self.assertEqual(after['debtors'], before['debtors'])
