# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The mirror of the accounting package: evidence of each sync (both sides
counted) and a changed link that starts again from scratch."""
import unittest
from decimal import Decimal

from trytond.exceptions import UserError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction

from .test_hub import ImuisSimulator, configure, fresh, new_link
from .tools import create_administration

try:
    from payt_hub.simulators.snelstart import (
        CLIENT_KEY, PRIMARY_KEY, SnelstartSimulator)
except ImportError:  # pragma: no cover
    SnelstartSimulator = None


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

    def linked(self):
        Link = Pool().get('payt.hub.link')
        configure(primary=PRIMARY_KEY)
        administration = create_administration()
        link = new_link(administration, 'snelstart', CLIENT_KEY,
            base_url='%s/v2/' % self.snelstart.url,
            auth_url='%s/b2b/token' % self.snelstart.url)
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
    def test_changed_url_resets_the_cursors_and_validates_again(self):
        "A new URL or code on an active link means a full resync"
        Link = Pool().get('payt.hub.link')
        _, link = self.linked()
        Link.sync_now([link])
        self.assertTrue(fresh(link).cursors)
        requests = len(self.snelstart.requests)
        Link.write([link], {'base_url': '%s/v2' % self.snelstart.url})
        link = fresh(link)
        self.assertEqual(link.cursors, ())
        self.assertEqual(link.state, 'active')
        # validated with a real call to the package
        self.assertGreater(len(self.snelstart.requests), requests)
        with self.assertRaises(UserError):
            Link.write([link], {'environment_code_masked': 'wrong-key'})

    @with_transaction()
    def test_unchanged_values_keep_the_cursors(self):
        "Saving a link without a new code or URL keeps its cursors"
        Link = Pool().get('payt.hub.link')
        _, link = self.linked()
        Link.sync_now([link])
        Link.write([link], {'base_url': link.base_url, 'sync_time': 7})
        self.assertTrue(fresh(link).cursors)
