# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The mirror of the accounting package: evidence of each sync (both sides
counted) and a changed link that starts again from scratch."""
import random
import unittest
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trytond.exceptions import UserError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction

from .test_hub import (
    TEST_ENVIRONMENT, ImuisSimulator, configure, fresh, new_link, override)
from .tools import create_administration

try:
    from payt_hub.simulators.exact import (
        CLIENT_ID as EXACT_CLIENT_ID, CLIENT_SECRET as EXACT_SECRET,
        REDIRECT_URI as EXACT_REDIRECT, ExactSimulator)
    from payt_hub.simulators.snelstart import (
        CLIENT_KEY, PRIMARY_KEY, SnelstartSimulator)
except ImportError:  # pragma: no cover
    SnelstartSimulator = None

#: the hypothesis strategies of a moving package: changes at data
#: requests (an outage lasts until the next sync), hub kills at batches
SCHEDULES = st.lists(st.tuples(st.integers(1, 25),
        st.sampled_from(['add', 'pay', 'credit', 'change', 'delete',
                'outage']), st.integers(0, 10**6)), max_size=8)
KILLS = st.lists(st.integers(1, 8), max_size=2)


@unittest.skipIf(ImuisSimulator is None, "payt_hub is not installed")
class HubMirrorTestCase(unittest.TestCase):
    "Mirror of the accounting package"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')
        cls.snelstart = SnelstartSimulator(debtors=4, items=12, seed=5).start()

    @classmethod
    def tearDownClass(cls):
        cls.snelstart.stop()
        super().tearDownClass()

    def package_link(self, package, sim):
        "An active link of a new administration to ``sim``."
        pool = Pool()
        Link = pool.get('payt.hub.link')
        Currency = pool.get('currency.currency')
        if not Currency.search([('code', '=', 'USD')]):
            Currency.create([{'name': "US Dollar", 'code': 'USD',
                        'symbol': '$', 'rounding': Decimal('0.01'),
                        'digits': 2}])
        configure(primary=PRIMARY_KEY)
        administration = create_administration(
            name="Mirror %s" % random.random())
        override(package, sim.url)
        if package == 'exact':
            Configuration = pool.get('payt.hub.configuration')
            Configuration.write([Configuration(1)], {
                    'exact_client_id': EXACT_CLIENT_ID,
                    'exact_client_secret_masked': EXACT_SECRET,
                    'exact_redirect_uri': EXACT_REDIRECT,
                    })
            code = sim.authorize()
        else:
            code = TEST_ENVIRONMENT if package == 'imuis' else CLIENT_KEY
        link = new_link(administration, package, code)
        Link.activate([link])
        return link

    @staticmethod
    def simulator(package, seed):
        if package == 'imuis':
            return ImuisSimulator(debtors=5, items=22, seed=seed)
        if package == 'exact':
            # Exact's minutely limit is not what this test is about
            return ExactSimulator(debtors=5, items=22, seed=seed,
                page_size=7, rate_limit=10**6,
                currencies=('EUR', 'EUR', 'USD'))
        return SnelstartSimulator(debtors=5, items=22, seed=seed)

    def converge(self, package, schedule, kills, seed):
        """Sync a moving package into the ERP through hub kills and source
        outages; then check ERP == package after a sync in quiet."""
        from payt_hub.errors import HubError
        from payt_hub.sync import SinkCrash, run_sync
        from ..hub import _ErpSink

        class KilledSink(_ErpSink):
            "Dies (before its transaction) at the batches drawn."
            def __init__(self, link, kill_at):
                super().__init__(link)
                self.kill_at, self.count = kill_at, 0

            def import_batch(self, batch, cursors=None):
                self.count += 1
                if self.count == self.kill_at:
                    raise SinkCrash('hub killed')
                return super().import_batch(batch, cursors)

        sim = self.simulator(package, seed).start()
        # the limiter of Exact's adapter counts every example's calls
        fast = {'rate_limit': '100000/minute'} if package == 'exact' else {}
        try:
            link = self.package_link(package, sim)
            sim.schedule = list(schedule)
            kills = list(kills)
            for _ in range(len(kills) + 6):
                sink = KilledSink(link, kills.pop(0) if kills else None)
                try:
                    with link._adapter(page_size=7, attempts=2,
                            retry_wait=0.01, **fast) as adapter:
                        run_sync(adapter, sink, progress=False)
                except (SinkCrash, HubError):
                    sim.control_reset_failures()
                    continue
                break
            # quiet, and up: an outage drawn for the last request of the
            # sync that completed is over
            sim.schedule = []
            sim.control_reset_failures()
            with link._adapter(page_size=7, **fast) as adapter:
                result = run_sync(adapter, _ErpSink(link), progress=False)
            erp = {k: ('%.2f' % Decimal(a), c) for k, (a, c) in
                link._open_state()['open'].items()}
            package_view = {k: ('%.2f' % Decimal(a), c)
                for k, (a, c) in sim.open_view().items()}
            self.assertEqual(erp, package_view)
            self.assertTrue(result.converged)
            self.assertEqual(link.book_evidence(
                    result.evidence['source'])['in_step'], True)
        finally:
            sim.stop()

    @settings(max_examples=6, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    @given(schedule=SCHEDULES, kills=KILLS, seed=st.integers(1, 40))
    def test_imuis_converges_in_the_erp(self, schedule, kills, seed):
        "iMUIS changing during syncs, killed syncs: the ERP converges"
        with_transaction()(self.converge)('imuis', schedule, kills, seed)

    @settings(max_examples=6, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    @given(schedule=SCHEDULES, kills=KILLS, seed=st.integers(1, 40))
    def test_snelstart_converges_in_the_erp(self, schedule, kills, seed):
        "SnelStart changing during syncs, killed syncs: the ERP converges"
        with_transaction()(self.converge)('snelstart', schedule, kills, seed)

    @settings(max_examples=6, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    @given(schedule=SCHEDULES, kills=KILLS, seed=st.integers(1, 40))
    def test_exact_converges_in_the_erp(self, schedule, kills, seed):
        "Exact Online changing during syncs, killed syncs: the ERP converges"
        with_transaction()(self.converge)('exact', schedule, kills, seed)

    def linked(self):
        Link = Pool().get('payt.hub.link')
        configure(primary=PRIMARY_KEY)
        administration = create_administration()
        override('snelstart', self.snelstart.url)
        link = new_link(administration, 'snelstart', CLIENT_KEY)
        Link.activate([link])
        return administration, link

    @with_transaction()
    def test_sync_books_both_sides_in_step(self):
        "A sync stores the counts and sums of both sides, equal"
        Link = Pool().get('payt.hub.link')
        _, link = self.linked()
        Link.sync_now([link])
        link = fresh(link)
        expected = self.snelstart.open_items()
        total = sum(Decimal(v) for v in expected.values())
        self.assertTrue(link.in_step)
        self.assertEqual(link.source_items, len(expected))
        self.assertEqual(link.erp_items, len(expected))
        self.assertEqual(link.source_open, 'EUR %.2f' % total)
        self.assertEqual(link.erp_open, link.source_open)
        self.assertTrue(link.evidence_date)

    @with_transaction()
    def test_sides_that_differ_raise_a_point_of_attention(self):
        "Counts that differ raise a point of attention naming both sides"
        pool = Pool()
        Link = pool.get('payt.hub.link')
        Attention = pool.get('payt.attention')
        administration, link = self.linked()
        Link.sync_now([link])
        link = fresh(link)
        link.book_evidence({'items': link.erp_items + 1,
                'open': {'EUR': '1.00'}})
        link = fresh(link)
        self.assertFalse(link.in_step)
        attention, = Attention.search([
                ('administration', '=', administration.id),
                ('reason', '=', 'import_mismatch')])
        self.assertIn('Package: %s items, EUR 1.00' % (link.erp_items + 1),
            attention.description)

    @with_transaction()
    def test_new_code_resets_the_cursors_and_validates_again(self):
        "A new code on an active link means a full resync"
        Link = Pool().get('payt.hub.link')
        _, link = self.linked()
        Link.sync_now([link])
        self.assertTrue(fresh(link).cursors)
        requests = len(self.snelstart.requests)
        # (the service address is the installation's, no longer the link's)
        self.snelstart.client_keys.add('sim-koppelsleutel-0002')
        Link.write([link], {'environment_code_masked':
                    'sim-koppelsleutel-0002'})
        link = fresh(link)
        self.assertEqual(link.cursors, ())
        self.assertEqual(link.state, 'active')
        # validated with a real call to the package
        self.assertGreater(len(self.snelstart.requests), requests)
        with self.assertRaises(UserError):
            Link.write([link], {'environment_code_masked': 'wrong-key'})

    @with_transaction()
    def test_unchanged_values_keep_the_cursors(self):
        "Saving a link without a new code keeps its cursors"
        Link = Pool().get('payt.hub.link')
        _, link = self.linked()
        Link.sync_now([link])
        Link.write([link], {'sync_time': 7})
        self.assertTrue(fresh(link).cursors)
