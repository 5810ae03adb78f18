# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Each administration is a company: users see only their own."""
import unittest
from contextlib import contextmanager

from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError
from trytond.modules.payt_dunning.company import (
    CompanyLinkError, ReadonlyFieldError)
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .tools import TODAY, create_administration, days, debtor, item


class AccessTestCase(unittest.TestCase):
    "Record rules and groups across two companies"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')

    def _setup(self):
        pool = Pool()
        Administration = pool.get('payt.administration')
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        ours = create_administration("Ours BV")
        theirs = create_administration("Theirs BV")
        for administration, prefix in [(ours, 'O'), (theirs, 'T')]:
            Administration.import_batch(administration.id, {
                    'debtors': [debtor(prefix + '1')],
                    'items': [item(prefix + 'I1', prefix + '1',
                            TODAY - days(8))]})
        user, = User.create([{
                    'name': "Anna", 'login': 'anna',
                    'companies': [('add', [ours.company.id])],
                    'company': ours.company.id,
                    'groups': [('add', [ModelData.get_id(
                                    'payt_dunning', 'group_payt')])],
                    }])
        return ours, theirs, user

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
    def test_user_sees_only_the_administrations_of_her_companies(self):
        "Anna sees her company's items, debtors and runs, not another's"
        pool = Pool()
        Item = pool.get('payt.item')
        Debtor = pool.get('payt.debtor')
        Administration = pool.get('payt.administration')
        Summary = pool.get('payt.dashboard.step')
        ours, theirs, user = self._setup()
        Run = pool.get('payt.run')
        Run.execute(ours, TODAY)
        Run.execute(theirs, TODAY)
        with self._as(user):
            self.assertEqual([i.external_id for i in Item.search([])],
                ['OI1'])
            self.assertEqual([d.external_id for d in Debtor.search([])],
                ['O1'])
            self.assertEqual(Administration.search([]), [ours])
            self.assertEqual(
                {s.administration for s in Summary.search([])}, {ours})
            self.assertEqual(len(Run.search([])), 1)
            with self.assertRaises(AccessError):
                Item.read([self._their_item_id(theirs)], ['open_amount'])

    def _their_item_id(self, administration):
        Item = Pool().get('payt.item')
        with Transaction().set_user(0), Transaction().set_context(
                _check_access=False):
            item_record, = Item.search(
                [('administration', '=', administration.id)])
            return item_record.id

    @with_transaction()
    def test_user_cannot_import_into_another_company(self):
        "The bulk entry point refuses an administration the user cannot see"
        Administration = Pool().get('payt.administration')
        ours, theirs, user = self._setup()
        with self._as(user):
            # A user may not import at all: that is the hub's and the
            # consultants' work.
            with self.assertRaises(AccessError):
                Administration.import_batch(ours.id, {
                        'debtors': [debtor('X')]})
        User = Pool().get('res.user')
        ModelData = Pool().get('ir.model.data')
        User.write([user], {'groups': [('add', [ModelData.get_id(
                            'payt_dunning', 'group_payt_consultant')])]})
        with self._as(user):
            summary = Administration.import_batch(ours.id, {
                    'debtors': [debtor('X')]})
            self.assertEqual(summary['debtors_created'], 1)
            with self.assertRaises(AccessError):
                Administration.import_batch(theirs.id, {
                        'debtors': [debtor('X')]})

    @with_transaction()
    def test_user_group_cannot_change_flows(self):
        "Flows are configured by consultants, not by every user"
        pool = Pool()
        Flow = pool.get('payt.flow')
        ours, theirs, user = self._setup()
        with self._as(user):
            flow, = Flow.search([], limit=1)
            with self.assertRaises(AccessError):
                Flow.write([flow], {'name': "Changed"})

    @with_transaction()
    def test_no_record_links_to_another_company(self):
        "Even admin cannot make a record of one company point at another's"
        pool = Pool()
        Pause = pool.get('payt.pause')
        Message = pool.get('payt.message')
        Debtor = pool.get('payt.debtor')
        ours, theirs, user = self._setup()
        their_debtor, = Debtor.search([('administration', '=', theirs.id)])
        with self.assertRaisesRegex(CompanyLinkError, 'belongs to Theirs BV'):
            Pause.create([{'company': ours.company.id,
                        'administration': theirs.id, 'kind': 'stop',
                        'reason': "Hostile", 'start_date': TODAY}])
        with self.assertRaisesRegex(CompanyLinkError, 'not to Ours BV'):
            Message.create([{'company': ours.company.id,
                        'administration': theirs.id,
                        'debtor': their_debtor.id, 'direction': 'out',
                        'body': "Pay me"}])

    @with_transaction()
    def test_clients_cannot_write_read_only_fields(self):
        "A field the views show read-only is refused over RPC, not inside"
        pool = Pool()
        Debtor = pool.get('payt.debtor')
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        ours, theirs, user = self._setup()
        User.write([user], {'groups': [('add', [ModelData.get_id(
                            'payt_dunning', 'group_payt_consultant')])]})
        with self._as(user):
            debtor_record, = Debtor.search([])
            with self.assertRaisesRegex(ReadonlyFieldError, 'Email'):
                Debtor.write([debtor_record], {'email': 'x@example.com'})
        self.assertEqual(debtor_record.email, 'debtor-O1@example.com')

    @with_transaction()
    def test_complete_batch_must_list_what_it_keeps(self):
        "complete without items closes nothing; keep and close_count work"
        pool = Pool()
        Administration = pool.get('payt.administration')
        Item = pool.get('payt.item')
        ours, theirs, user = self._setup()
        Administration.import_batch(ours.id, {'items': [
                    item('OI2', 'O1', TODAY), item('OI3', 'O1', TODAY)]})

        def open_ids():
            return sorted(i.external_id for i in Item.search([
                        ('administration', '=', ours.id),
                        ('state', '=', 'open')]))
        with self.assertRaisesRegex(UserError, 'must list the items'):
            Administration.import_batch(ours.id, {'complete': True})
        with self.assertRaisesRegex(UserError, 'confirms closing 2'):
            Administration.import_batch(ours.id, {'complete': True,
                    'close_count': 2})
        self.assertEqual(open_ids(), ['OI1', 'OI2', 'OI3'])
        summary = Administration.import_batch(ours.id, {'complete': True,
                'keep': ['OI1', 'OI2']})
        self.assertEqual(summary['items_closed'], 1)
        self.assertEqual(open_ids(), ['OI1', 'OI2'])
        summary = Administration.import_batch(ours.id, {'complete': True,
                'close_count': 2})
        self.assertEqual(summary['items_closed'], 2)
        self.assertEqual(open_ids(), [])

    @with_transaction()
    def test_control_characters_refused_in_every_text(self):
        "A NUL byte in a name or an address is refused naming the field"
        Administration = Pool().get('payt.administration')
        ours, theirs, user = self._setup()
        for field in ['name', 'city', 'street', 'email']:
            with self.assertRaisesRegex(UserError,
                    'debtor "N1", field "%s": contains control' % field):
                Administration.import_batch(ours.id, {'debtors': [
                            debtor('N1', **{field: 'a\x00b@example.com'})]})
        with self.assertRaisesRegex(UserError, 'field "description"'):
            Administration.import_batch(ours.id, {'items': [
                        item('N2', 'O1', TODAY, description='a\x00b')]})

    @with_transaction()
    def test_every_wizard_and_button_has_a_group(self):
        "No wizard or button of the module is open to every logged-in user"
        pool = Pool()
        Wizard = pool.get('ir.action.wizard')
        Button = pool.get('ir.model.button')
        wizards = Wizard.search([('wiz_name', 'like', 'payt.%')])
        buttons = Button.search([('model', 'like', 'payt.%')])
        self.assertGreater(len(wizards), 8)
        self.assertGreater(len(buttons), 20)
        self.assertEqual(
            [w.wiz_name for w in wizards if not w.groups], [])
        self.assertEqual(
            ['%s.%s' % (b.model, b.name) for b in buttons if not b.groups],
            [])
