# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Links to accounting packages: activation against the package simulators
(real sockets), masked codes and keys, import status, automatic pause after
failing days and lift on success."""
import datetime
import unittest

from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .tools import create_administration, days

try:
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

    @classmethod
    def tearDownClass(cls):
        cls.imuis.stop()
        cls.snelstart.stop()
        super().tearDownClass()

    def imuis_link(self, administration, code=TEST_ENVIRONMENT):
        return new_link(administration, 'imuis', code,
            base_url='%s/ws1_xml.asmx?WSDL' % self.imuis.url)

    def snelstart_link(self, administration, code=CLIENT_KEY):
        return new_link(administration, 'snelstart', code,
            base_url='%s/v2/' % self.snelstart.url,
            auth_url='%s/b2b/token' % self.snelstart.url)

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
        link = new_link(create_administration(), 'imuis', TEST_ENVIRONMENT,
            base_url='http://127.0.0.1:%s/ws1_xml.asmx?WSDL' % port)
        with self.assertRaises(UserError) as cm:
            Link.activate([link])
        self.assertIn('cannot be reached', str(cm.exception))

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
