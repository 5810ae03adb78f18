# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Links to accounting packages: activation against the package simulators
(real sockets), masked codes and keys, import status, automatic pause after
failing days and lift on success."""
import base64
import datetime
import json
import os
import socket
import subprocess
import time
import unittest
import urllib.request
from decimal import Decimal

from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .tools import create_administration, days

try:
    from payt_hub.simulators.exact import (
        CLIENT_ID as EXACT_CLIENT_ID, CLIENT_SECRET as EXACT_SECRET,
        DIVISION as EXACT_DIVISION, REDIRECT_URI as EXACT_REDIRECT,
        ExactSimulator)
    from payt_hub.simulators.imuis import (
        TEST_ENVIRONMENT, TEST_PARTNER_KEY, ImuisSimulator)
    from payt_hub.simulators.snelstart import (
        CLIENT_KEY, PRIMARY_KEY, SECONDARY_KEY, SnelstartSimulator)
except ImportError:  # pragma: no cover
    ImuisSimulator = None


def configure(imuis_key=TEST_PARTNER_KEY if ImuisSimulator else None,
        primary=None, secondary=None, threshold=3):
    Configuration = Pool().get('payt.hub.configuration')
    config = Configuration(1)
    config.imuis_partner_key_masked = imuis_key
    config.snelstart_subscription_key_primary_masked = primary
    config.snelstart_subscription_key_secondary_masked = secondary
    config.failure_threshold = threshold
    config.save()
    return config


def override(package, url):
    "The administrator points a package at a simulator."
    Configuration = Pool().get('payt.hub.configuration')
    Configuration.write([Configuration(1)],
        {'%s_url_override' % package: url})


def new_link(administration, package, code, **values):
    Link = Pool().get('payt.hub.link')
    link, = Link.create([dict({
                    'administration': administration.id,
                    'package': package,
                    'environment_code_masked': code,
                    }, **values)])
    return link


def fresh(record):
    return record.__class__(record.id)


@unittest.skipIf(ImuisSimulator is None, "payt_hub is not installed")
class HubTestCase(unittest.TestCase):
    "Links to accounting packages"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')
        cls.imuis = ImuisSimulator(debtors=4, items=12, seed=3).start()
        cls.snelstart = SnelstartSimulator(debtors=4, items=12, seed=3).start()
        cls.exact = ExactSimulator(debtors=4, items=15, seed=3,
            currencies=('EUR', 'USD')).start()

    @classmethod
    def tearDownClass(cls):
        cls.imuis.stop()
        cls.snelstart.stop()
        cls.exact.stop()
        super().tearDownClass()

    def imuis_link(self, administration, code=TEST_ENVIRONMENT):
        override('imuis', self.imuis.url)
        return new_link(administration, 'imuis', code)

    def snelstart_link(self, administration, code=CLIENT_KEY):
        override('snelstart', self.snelstart.url)
        return new_link(administration, 'snelstart', code)

    @with_transaction()
    def test_package_names_are_payt_hub_adapters(self):
        "Each package offered is an adapter of payt_hub"
        from payt_hub.adapters.base import ADAPTERS, get_adapter
        Link = Pool().get('payt.hub.link')
        for package, _ in Link.package.selection:
            try:
                get_adapter(package)
            except TypeError:  # settings missing: the adapter exists
                pass
            self.assertIn(package, ADAPTERS)

    @with_transaction()
    def test_activate_imuis_with_good_code(self):
        "A good Omgevingscode activates the link after a real login"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.imuis_link(create_administration())
        logins = self.imuis.logins
        Link.activate([link])
        self.assertEqual(fresh(link).state, 'active')
        self.assertGreater(self.imuis.logins, logins)

    @with_transaction()
    def test_activate_imuis_with_unknown_code(self):
        "An unknown Omgevingscode is refused with a message saying so"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.imuis_link(create_administration(), code='99999')
        with self.assertRaises(UserError) as cm:
            Link.activate([link])
        message = str(cm.exception)
        self.assertIn('does not know the environment code', message)
        self.assertIn('MUIS Apps', message)
        self.assertNotIn('99999', message)
        self.assertEqual(fresh(link).state, 'draft')

    @with_transaction()
    def test_activate_imuis_with_wrong_partner_key(self):
        "A wrong partner key of the installation is named as such"
        Link = Pool().get('payt.hub.link')
        configure(imuis_key='not-the-partner-key-0000')
        link = self.imuis_link(create_administration())
        with self.assertRaises(UserError) as cm:
            Link.activate([link])
        self.assertIn('refused the partner key', str(cm.exception))
        self.assertNotIn('not-the-partner-key-0000', str(cm.exception))

    @with_transaction()
    def test_activate_unreachable_package(self):
        "A package that does not answer is reported unreachable"
        import socket
        Link = Pool().get('payt.hub.link')
        configure()
        with socket.socket() as s:  # a port nobody listens on
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        override('imuis', 'http://127.0.0.1:%s' % port)
        link = new_link(create_administration(), 'imuis', TEST_ENVIRONMENT)
        with self.assertRaises(UserError) as cm:
            Link.activate([link])
        self.assertIn('cannot be reached', str(cm.exception))
        # the error does not tell a user what answers where
        self.assertNotIn(str(port), str(cm.exception))

    @with_transaction()
    def test_activate_snelstart_good_and_wrong_key(self):
        "SnelStart: a good koppelsleutel activates, a wrong one is refused"
        Link = Pool().get('payt.hub.link')
        configure(primary=PRIMARY_KEY, secondary=SECONDARY_KEY)
        link = self.snelstart_link(create_administration())
        Link.activate([link])
        self.assertEqual(fresh(link).state, 'active')

        other = self.snelstart_link(create_administration("Other BV"),
            code='revoked-koppelsleutel-1234')
        with self.assertRaises(UserError) as cm:
            Link.activate([other])
        self.assertIn('refused the koppelsleutel', str(cm.exception))
        self.assertIn('Koppelingen', str(cm.exception))
        self.assertNotIn('revoked-koppelsleutel-1234', str(cm.exception))

    @with_transaction()
    def test_missing_partner_key_is_explained(self):
        "Activating without the installation's partner key says where to set it"
        Link = Pool().get('payt.hub.link')
        configure(imuis_key=None)
        link = self.imuis_link(create_administration())
        with self.assertRaises(UserError) as cm:
            Link.activate([link])
        self.assertIn('Connector Hub Settings', str(cm.exception))

    @with_transaction()
    def test_codes_and_keys_are_shown_masked(self):
        "Codes and keys are shown with their last 3 characters at most"
        configure(primary=PRIMARY_KEY, secondary=SECONDARY_KEY)
        Configuration = Pool().get('payt.hub.configuration')
        link = self.snelstart_link(create_administration())
        self.assertEqual(fresh(link).environment_code_masked,
            '*****' + CLIENT_KEY[-3:])
        config = Configuration(1)
        self.assertEqual(config.imuis_partner_key_masked,
            '*****' + TEST_PARTNER_KEY[-3:])
        self.assertEqual(config.snelstart_subscription_key_primary_masked,
            '*****' + PRIMARY_KEY[-3:])
        short = self.imuis_link(create_administration("Short BV"))
        self.assertEqual(fresh(short).environment_code_masked, '********')
        # typing a new code replaces the stored one
        link.environment_code_masked = 'another-koppelsleutel-777'
        link.save()
        self.assertEqual(fresh(link).environment_code,
            'another-koppelsleutel-777')

    @with_transaction()
    def test_secrets_unreadable_outside_the_hub_group(self):
        "A consultant can type a code but not read it back, nor the keys"
        pool = Pool()
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        Link = pool.get('payt.hub.link')
        Configuration = pool.get('payt.hub.configuration')
        configure()
        administration = create_administration()
        link = self.imuis_link(administration)
        consultant, = User.create([{
                    'name': "Consultant", 'login': 'consultant',
                    'companies': [('add', [administration.company.id])],
                    'company': administration.company.id,
                    'groups': [('add', [ModelData.get_id(
                                    'payt_dunning',
                                    'group_payt_consultant')])],
                    }])
        with Transaction().set_user(consultant.id), \
                Transaction().set_context(_check_access=True,
                    company=administration.company.id):
            values, = Link.read([link.id], ['environment_code_masked'])
            self.assertEqual(values['environment_code_masked'], '********')
            with self.assertRaises(AccessError):
                Link.read([link.id], ['environment_code'])
            with self.assertRaises(AccessError):  # no guessing by search
                Link.search([('environment_code', '=', TEST_ENVIRONMENT)])
            with self.assertRaises(AccessError):
                Configuration.read([1], ['imuis_partner_key'])
            Link.write([Link(link.id)],
                {'environment_code_masked': 'typed-by-consultant'})
            with self.assertRaises(AccessError):
                Link.links_to_sync()
        self.assertEqual(fresh(link).environment_code, 'typed-by-consultant')

    @with_transaction()
    def test_links_to_sync_gives_the_hub_what_it_needs(self):
        "The hub gets package, settings and administration of active links"
        Link = Pool().get('payt.hub.link')
        configure(primary=PRIMARY_KEY)
        administration = create_administration()
        link = self.imuis_link(administration)
        draft = self.snelstart_link(create_administration("Draft BV"))
        # (other tests' or scenarios' links may exist in this database)
        ids = lambda: [l['id'] for l in Link.links_to_sync()]  # noqa: E731
        self.assertNotIn(link.id, ids())
        Link.activate([link])
        self.assertNotIn(draft.id, ids())
        found, = [l for l in Link.links_to_sync() if l['id'] == link.id]
        self.assertEqual(found['id'], link.id)
        self.assertEqual(found['administration'], administration.id)
        self.assertEqual(found['package'], 'imuis')
        self.assertEqual(found['settings'], {
                'partner_key': TEST_PARTNER_KEY,
                'environment': TEST_ENVIRONMENT,
                'wsdl': '%s/ws1_xml.asmx?WSDL' % self.imuis.url})
        self.assertEqual(Link.links_to_sync(
                administration=administration.name)[0]['id'], link.id)
        self.assertEqual(Link.links_to_sync(
                administration=draft.administration.id), [])

    @with_transaction()
    def test_record_result_bookkeeping(self):
        "Each import result updates the link's status"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.imuis_link(create_administration())
        Link.activate([link])
        status = Link.record_result(link.id, True, None, 12)
        self.assertEqual(status['state'], 'active')
        link = fresh(link)
        self.assertEqual(link.items_imported, 12)
        self.assertTrue(link.last_success)
        status = Link.record_result(link.id, False,
            'iMUIS GetStamtabelRecords: HTTP 500 (code %s)'
            % TEST_PARTNER_KEY, 0)
        self.assertEqual(status, {'id': link.id, 'state': 'failed',
                'consecutive_failures': 1, 'failing_days': 1,
                'paused': False})
        link = fresh(link)
        self.assertEqual(link.last_error,
            'iMUIS GetStamtabelRecords: HTTP 500 (code ***)')
        self.assertEqual(link.items_imported, 12)
        Link.record_result(link.id, False, 'HTTP 500', 0)
        link = fresh(link)
        self.assertEqual((link.consecutive_failures, link.failing_days),
            (2, 1))

    @with_transaction()
    def test_pause_after_failing_days_and_lift_on_success(self):
        "After N failed days follow-up pauses; the next success resumes it"
        pool = Pool()
        Link = pool.get('payt.hub.link')
        Attention = pool.get('payt.attention')
        configure(threshold=3)
        administration = create_administration()
        link = self.imuis_link(administration)
        Link.activate([link])
        now = datetime.datetime.now()
        for n, day in enumerate([now - days(2), now - days(2), now - days(1)]):
            status = fresh(link).book_result(False, 'iMUIS is unreachable', 0,
                now=day)
            self.assertFalse(status['paused'])
            self.assertEqual(fresh(administration).follow_up, 'active')
        status = fresh(link).book_result(False, 'iMUIS is unreachable', 0,
            now=now)
        self.assertEqual(status['failing_days'], 3)
        self.assertEqual(status['consecutive_failures'], 4)
        self.assertTrue(status['paused'])
        self.assertEqual(fresh(administration).follow_up, 'paused')
        pause, = [p for p in fresh(administration).pauses
            if p.state == 'active']
        self.assertEqual(pause.automatic, 'import_failing')
        self.assertEqual(pause.reason,
            'import failing: iMUIS is unreachable')
        attention, = Attention.search([
                ('administration', '=', administration.id),
                ('reason', '=', 'import_failing'), ('state', '=', 'open')])
        # another failure the same day: no second pause, no second attention
        fresh(link).book_result(False, 'iMUIS is unreachable', 0, now=now)
        self.assertEqual(len([p for p in fresh(administration).pauses
                    if p.state == 'active']), 1)

        status = Link.record_result(link.id, True, None, 5)
        self.assertFalse(status['paused'])
        self.assertEqual(fresh(administration).follow_up, 'active')
        self.assertEqual(fresh(attention).state, 'resolved')
        self.assertEqual(fresh(link).failing_days, 0)

    @with_transaction()
    def test_success_does_not_lift_a_pause_made_by_hand(self):
        "Only the automatic pause is lifted by a successful import"
        pool = Pool()
        Link = pool.get('payt.hub.link')
        Pause = pool.get('payt.pause')
        configure()
        administration = create_administration()
        link = self.imuis_link(administration)
        Link.activate([link])
        Pause.hold([administration], 'pause', "Customer on holiday")
        Link.record_result(link.id, True, None, 1)
        self.assertEqual(fresh(administration).follow_up, 'paused')

    @with_transaction()
    def test_sync_now_imports_the_open_items(self):
        "Import Now brings the package's open items into the administration"
        pool = Pool()
        Link = pool.get('payt.hub.link')
        Item = pool.get('payt.item')
        configure(primary=PRIMARY_KEY)
        administration = create_administration()
        link = self.snelstart_link(administration)
        Link.activate([link])
        Link.sync_now([link])
        open_items = {i.external_id: i.open_amount for i in Item.search([
                    ('administration', '=', administration.id),
                    ('state', '=', 'open')])}
        expected = self.snelstart.open_items()
        self.assertEqual(set(open_items), set(expected))
        link = fresh(link)
        self.assertEqual(link.state, 'active')
        self.assertEqual(link.items_imported, len(open_items))
        self.assertEqual({c.stream for c in link.cursors},
            {'debtors', 'open_items'})

    @with_transaction()
    def test_sync_now_records_a_failure(self):
        "Import Now on a package that fails records the error on the link"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.imuis_link(create_administration())
        Link.activate([link])
        self.imuis.fail('500', count=20, op='GetStamtabelRecords')
        try:
            Link.sync_now([link])
        finally:
            self.imuis.control_reset_failures()
        link = fresh(link)
        self.assertEqual(link.state, 'failed')
        self.assertIn('iMUIS GetStamtabelRecords', link.last_error)
        self.assertEqual(link.consecutive_failures, 1)

    def exact_link(self, administration, code=None):
        Configuration = Pool().get('payt.hub.configuration')
        Configuration.write([Configuration(1)], {
                'exact_client_id': EXACT_CLIENT_ID,
                'exact_client_secret_masked': EXACT_SECRET,
                'exact_redirect_uri': EXACT_REDIRECT,
                })
        override('exact', self.exact.url)
        return new_link(administration, 'exact',
            code or self.exact.authorize())

    @with_transaction()
    def test_exact_link_by_authorization_code_then_import(self):
        "Exact Online: paste the code, activate, import every open item"
        pool = Pool()
        Link = pool.get('payt.hub.link')
        Item = pool.get('payt.item')
        configure()
        administration = create_administration()
        if not pool.get('currency.currency').search([('code', '=', 'USD')]):
            pool.get('currency.currency').create([{'name': "US Dollar",
                        'code': 'USD', 'symbol': '$',
                        'rounding': Decimal('0.01'), 'digits': 2}])
        link = self.exact_link(administration)
        self.assertIn('/api/oauth2/auth?client_id=', link.authorization_url)
        self.assertTrue(link.authorization_url.startswith(self.exact.url))
        Link.activate([link])
        link = fresh(link)
        self.assertEqual(link.state, 'active')
        self.assertEqual(link.division, str(EXACT_DIVISION))
        # the used code is gone, the rotating refresh token kept
        self.assertIsNone(link.environment_code)
        self.assertIn(link.refresh_token, self.exact.refresh_tokens)
        Link.sync_now([link])
        link = fresh(link)
        self.assertEqual(link.state, 'active', link.last_error)
        self.assertIn(link.refresh_token, self.exact.refresh_tokens)
        items = {i.external_id: i for i in Item.search([
                    ('administration', '=', administration.id),
                    ('state', '=', 'open')])}
        expected = self.exact.open_items()
        self.assertEqual({k: str(i.open_amount) for k, i in items.items()},
            expected)
        # amounts in the entry's own currency, as Exact lists them
        self.assertEqual(
            {k for k, i in items.items() if i.currency.code == 'USD'},
            {str(h) for h, r in self.exact.receivables.items()
                if r['CurrencyCode'] == 'USD'})

    @with_transaction()
    def test_exact_code_used_twice_asks_for_a_new_authorization(self):
        "A used or expired code is refused with what to do, code unshown"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.exact_link(create_administration(),
            code='sim-code-already-used-0001')
        with self.assertRaises(UserError) as cm:
            Link.activate([link])
        self.assertIn('approve the app', str(cm.exception))
        self.assertNotIn('sim-code-already-used-0001', str(cm.exception))
        self.assertEqual(fresh(link).state, 'draft')

    @with_transaction()
    def test_test_wizard_checks_without_changing_the_link(self):
        "Test says whether the package accepts the link, and changes nothing"
        pool = Pool()
        Link = pool.get('payt.hub.link')
        TestWizard = pool.get('payt.hub.link.test', type='wizard')
        configure(primary=PRIMARY_KEY)
        link = self.snelstart_link(create_administration())
        before = fresh(link)
        tokens = self.snelstart.token_requests
        session_id, _, _ = TestWizard.create()
        with Transaction().set_context(active_model='payt.hub.link',
                active_id=link.id, active_ids=[link.id]):
            result = TestWizard.execute(session_id, {}, 'start')
        self.assertIn('accepted the credentials',
            result['view']['defaults']['message'])
        self.assertGreater(self.snelstart.token_requests, tokens)
        after = fresh(link)
        for name in ('state', 'environment_code', 'last_attempt',
                'last_error', 'consecutive_failures'):
            self.assertEqual(getattr(after, name), getattr(before, name))
        # a wrong code: the error is shown, nothing booked on the link
        Link.write([link], {'environment_code_masked': 'revoked-0000000'})
        session_id, _, _ = TestWizard.create()
        with Transaction().set_context(active_model='payt.hub.link',
                active_id=link.id, active_ids=[link.id]), \
                self.assertRaises(UserError):
            TestWizard.execute(session_id, {}, 'start')
        after = fresh(link)
        self.assertEqual((after.state, after.last_error, after.last_attempt),
            ('draft', None, None))

    @with_transaction()
    def test_active_link_keeps_its_package_and_administration(self):
        "On the server, not only in the client"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.imuis_link(create_administration())
        Link.activate([link])
        with self.assertRaises(AccessError):
            Link.write([link], {'package': 'snelstart'})
        with self.assertRaises(AccessError):
            Link.write([link], {
                    'administration': create_administration("Other BV").id})
        self.assertEqual(fresh(link).package, 'imuis')
        Link.write([link], {'package': 'imuis', 'sync_time': 7})

    @with_transaction()
    def test_failing_link_is_tried_again_the_same_day(self):
        "A failed link is due again an hour later; an ok one tomorrow"
        Link = Pool().get('payt.hub.link')
        configure()
        link = self.imuis_link(create_administration())
        Link.activate([link])
        afternoon = datetime.datetime.combine(datetime.date.today(),
            datetime.time(15, 0))
        fresh(link).book_result(False, 'iMUIS is unreachable', 0,
            now=afternoon - datetime.timedelta(minutes=10))
        self.assertFalse(fresh(link)._due(afternoon))
        self.assertTrue(fresh(link)._due(
                afternoon + datetime.timedelta(hours=1)))
        fresh(link).book_result(True, None, 3, now=afternoon)
        self.assertFalse(fresh(link)._due(
                afternoon + datetime.timedelta(hours=2)))

    @with_transaction()
    def test_override_must_be_a_service_root(self):
        "The administrator's override is an address, nothing else"
        Configuration = Pool().get('payt.hub.configuration')
        for url in ['file:///etc/passwd', 'http://127.0.0.1:8081/x?y',
                'gopher://127.0.0.1:6379']:
            with self.assertRaises(UserError):
                Configuration.write([Configuration(1)],
                    {'imuis_url_override': url})

    def test_scrub_replaces_whole_secrets_only(self):
        "Error texts lose the code 00000, never digits of a number"
        from ..hub import scrub
        self.assertEqual(
            scrub('took 4.930338591000009s for code 00000', '00000'),
            'took 4.930338591000009s for code ***')


SERVER_SETUP = '''
pool = Pool()
ModelData = pool.get('ir.model.data'); User = pool.get('res.user')
Administration = pool.get('payt.administration')
Configuration = pool.get('payt.hub.configuration')
Link = pool.get('payt.hub.link')
group = lambda name: ModelData.get_id('payt_dunning', name)
ours, = Administration.search([('name', '=', 'Hub BV')])
theirs, = Administration.search([('name', '=', 'Other Hub BV')])
for login, groups in [('consultant', ['group_payt_consultant', 'group_payt']),
        ('anna', ['group_payt'])]:
    User.create([{'login': login, 'name': login, 'password': %(password)r,
        'groups': [('add', [group(g) for g in groups])],
        'companies': [('add', [ours.company.id])],
        'company': ours.company.id}])
Configuration.write([Configuration(1)], {
    'imuis_partner_key': %(partner_key)r, 'imuis_url_override': %(url)r})
draft, = Link.create([{'administration': ours.id, 'package': 'imuis',
    'environment_code': '99999'}])
other, = Link.create([{'administration': theirs.id, 'package': 'imuis',
    'environment_code': 'their-secret-code', 'state': 'active'}])
print(json.dumps([draft.id, other.id]))
'''


@unittest.skipIf(ImuisSimulator is None, "payt_hub is not installed")
class HubServerTestCase(unittest.TestCase):
    """The installation's secrets attacked over JSON-RPC on a running
    server, as the consultant and the back office (anna): refused, nothing
    changed, no request sent to the attacker's address."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from .test_server import ADMINISTRATION, SETUP, Database
        cls.imuis = ImuisSimulator(debtors=3, items=6, seed=4).start()
        cls.attacker = ImuisSimulator(debtors=1, items=1, seed=9).start()
        cls.database = Database()
        cls.database.python(SETUP)
        cls.database.python(ADMINISTRATION % "Hub BV")
        cls.database.python(ADMINISTRATION % "Other Hub BV")
        from .test_server import PASSWORD
        cls.password = PASSWORD
        # the configuration singleton's first write locks its table
        out = cls.database.python(SERVER_SETUP % {'password': PASSWORD,
                'partner_key': TEST_PARTNER_KEY, 'url': cls.imuis.url},
            lock_tables=['payt_hub_configuration'])
        cls.draft, cls.other = json.loads(out.strip().splitlines()[-1])

    @classmethod
    def tearDownClass(cls):
        cls.database.drop()
        cls.imuis.stop()
        cls.attacker.stop()
        super().tearDownClass()

    def setUp(self):
        self.port = self._start_server()

    def _start_server(self):
        from .test_server import BIN, free_port
        port = free_port()
        server = subprocess.Popen([os.path.join(BIN, 'trytond'),
                '-d', self.database.name],
            env=dict(self.database.env,
                TRYTOND_WEB__LISTEN='127.0.0.1:%s' % port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(server.wait, 10)
        self.addCleanup(server.terminate)
        for _ in range(150):
            try:
                socket.create_connection(('127.0.0.1', port), 1).close()
                return port
            except OSError:
                time.sleep(0.2)
        self.fail("trytond did not start")

    def _post(self, method, params, session=None):
        request = urllib.request.Request(
            'http://127.0.0.1:%s/%s/rpc/' % (self.port, self.database.name),
            data=json.dumps({'id': 1, 'method': method,
                    'params': params}).encode(),
            headers={'Content-Type': 'application/json'})
        if session:
            request.add_header('Authorization', 'Session ' + session)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def login(self, login):
        "A caller: call(method, *params) as that user, with their context."
        user_id, key = self._post('common.db.login',
            [login, {'password': self.password}, 'en'])['result'][:2]
        session = base64.b64encode(
            ('%s:%s:%s' % (login, user_id, key)).encode()).decode()
        context = self._post('model.res.user.get_preferences', [True, {}],
            session)['result']

        def call(method, *params):
            return self._post(method, list(params) + [context], session)
        return call

    def state(self):
        "What matters, read as admin in another process."
        return json.loads(self.database.python(
            "Link = pool.get('payt.hub.link')\n"
            "Configuration = pool.get('payt.hub.configuration')\n"
            "c = Configuration(1)\n"
            "print(json.dumps({'override': c.imuis_url_override,\n"
            "    'links': sorted((l.id, l.package, l.state,\n"
            "        l.environment_code) for l in Link.search([]))}))"
            ).strip().splitlines()[-1])

    def assertRefused(self, reply):
        self.assertIn('error', reply, reply)
        return reply['error']

    def test_consultant_cannot_point_a_package_elsewhere(self):
        "Service addresses are the administrator's, never the consultant's"
        consultant = self.login('consultant')
        before = self.state()
        self.assertRefused(consultant('model.payt.hub.configuration.write',
                [1], {'imuis_url_override': self.attacker.url}))
        for values in [{'base_url': self.attacker.url + '/ws1_xml.asmx'},
                {'auth_url': self.attacker.url}, {'division': '99'},
                {'refresh_token': 'typed-token'}]:
            self.assertRefused(consultant('model.payt.hub.link.write',
                    [self.draft], values))
        self.assertRefused(consultant('model.payt.hub.link.create',
                [{'administration': 1, 'package': 'imuis',
                        'base_url': self.attacker.url}]))
        # activating sends the partner key and the code to iMUIS only
        self.assertRefused(consultant('model.payt.hub.link.activate',
                [self.draft]))
        self.assertEqual(self.state(), before)
        self.assertEqual(self.attacker.requests, [])
        self.assertGreater(len(self.imuis.requests), 0)

    def test_secrets_stay_unreadable_and_the_active_link_fixed(self):
        "The consultant links by pasting a code, reads back no secret"
        consultant = self.login('consultant')
        for model, field in [('payt.hub.link', 'environment_code'),
                ('payt.hub.link', 'refresh_token'),
                ('payt.hub.configuration', 'imuis_partner_key'),
                ('payt.hub.configuration', 'exact_client_secret')]:
            ids = [self.draft] if model == 'payt.hub.link' else [1]
            self.assertRefused(consultant('model.%s.read' % model, ids,
                    [field]))
        # the other company's link: not even its masked code
        self.assertRefused(consultant('model.payt.hub.link.read',
                [self.other], ['environment_code_masked']))
        # paste the right code and activate, without the administrator
        reply = consultant('model.payt.hub.link.write', [self.draft],
            {'environment_code_masked': TEST_ENVIRONMENT})
        self.assertNotIn('error', reply, reply)
        reply = consultant('model.payt.hub.link.activate', [self.draft])
        self.assertNotIn('error', reply, reply)
        masked, = consultant('model.payt.hub.link.read', [self.draft],
            ['environment_code_masked', 'state'])['result']
        self.assertEqual((masked['environment_code_masked'],
                masked['state']), ('********', 'active'))
        before = self.state()
        self.assertRefused(consultant('model.payt.hub.link.write',
                [self.draft], {'package': 'snelstart'}))
        self.assertEqual(self.state(), before)
        self.assertEqual(self.attacker.requests, [])

    def test_back_office_cannot_change_or_activate_links(self):
        "anna reads the import status, nothing more"
        anna = self.login('anna')
        before = self.state()
        reply = anna('model.payt.hub.link.read', [self.draft],
            ['state', 'last_error'])
        self.assertNotIn('error', reply, reply)
        self.assertRefused(anna('model.payt.hub.link.read', [self.draft],
                ['environment_code']))
        self.assertRefused(anna('model.payt.hub.link.write', [self.draft],
                {'environment_code_masked': 'anna-typed-this'}))
        self.assertRefused(anna('model.payt.hub.link.activate',
                [self.draft]))
        self.assertRefused(anna('model.payt.hub.configuration.write',
                [1], {'imuis_url_override': self.attacker.url}))
        self.assertEqual(self.state(), before)
        self.assertEqual(self.attacker.requests, [])
