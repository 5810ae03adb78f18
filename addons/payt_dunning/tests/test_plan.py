# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Payment plans: terms and rounding, pausing the flow, reminders also when
paused, payments applied in order, missed terms, cancel and break; and
debtor messages with their notifications."""
import unittest
from decimal import Decimal
from unittest.mock import patch

from trytond.exceptions import UserError
from trytond.model.exceptions import DomainValidationError
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .tools import (
    TODAY, create_administration, days, debtor, item, items_by_external_id,
    run)


def fresh(record):
    return record.__class__(record.id)


def run_and_send(administration, date):
    "The daily run, then its sender (as cron_daily does)."
    summary = run(administration, date)
    Pool().get('payt.communication').send_pending(administration)
    return summary


class Outbox(list):
    """A mail server keeping what it is handed (the SMTP boundary): patched
    in as the email provider's connection."""
    uri = 'smtp://outbox'

    def __call__(self, *args, **kwargs):
        return self

    def send_message(self, msg, *args, **kwargs):
        self.append(msg)
        return {}

    def quit(self):
        pass


class PlanTestCase(unittest.TestCase):
    "Payment plans and messages"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')

    def setUp(self):
        super().setUp()
        # Only the SMTP boundary is replaced.
        self.outbox = Outbox()
        patcher = patch('trytond.modules.payt_dunning.providers.smtp.'
            'get_smtp_server', self.outbox)
        patcher.start()
        self.addCleanup(patcher.stop)

    def _setup(self, amounts=('100.00', '100.00'), due=TODAY - days(10)):
        Administration = Pool().get('payt.administration')
        administration = create_administration()
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1'), debtor('D2')],
                'items': [item('I%d' % n, 'D1', due, amount=a)
                    for n, a in enumerate(amounts, 1)]
                + [item('OTHER', 'D2', due)]})
        found = items_by_external_id(administration)
        return administration, found

    def _plan(self, administration, items, terms=3, start=TODAY + days(5),
            **values):
        Plan = Pool().get('payt.plan')
        return Plan.create_for(items[0].debtor, items, [], terms, start,
            **values)

    def _pay(self, administration, external_id, debtor_id, open_amount,
            amount='121.00', payment=None):
        "The accounting package reports a lower open amount."
        Administration = Pool().get('payt.administration')
        batch = {'items': [item(external_id, debtor_id, TODAY - days(10),
                    amount=amount, open_amount=open_amount)]}
        if payment:
            batch['payments'] = [{'external_id': payment,
                    'item': external_id, 'date': TODAY.isoformat(),
                    'amount': payment_amount}
                for payment_amount in [str(Decimal(amount)
                        - Decimal(open_amount))]]
        Administration.import_batch(administration.id, batch)

    @with_transaction()
    def test_equal_terms_put_the_rounding_remainder_on_the_last(self):
        "100 in 3 terms: 33.33, 33.33, 33.34 on monthly dates"
        administration, found = self._setup(amounts=('100.00',))
        plan = self._plan(administration, [found['I1']], terms=3,
            start=TODAY.replace(day=1) + days(30))
        terms = sorted(plan.terms, key=lambda t: t.due_date)
        self.assertEqual([t.amount for t in terms],
            [Decimal('33.33'), Decimal('33.33'), Decimal('33.34')])
        self.assertEqual(sum(t.amount for t in terms), plan.total)
        self.assertEqual(terms[1].due_date.day, terms[0].due_date.day)
        self.assertEqual((terms[1].due_date.month - terms[0].due_date.month)
            % 12, 1)

    @with_transaction()
    def test_rounding_over_many_odd_amounts(self):
        "Terms always sum exactly to the total"
        from trytond.modules.payt_dunning.plan import split_equal
        for total in ['0.07', '1.00', '99.99', '1234.56', '10000.01']:
            for count in range(1, 14):
                terms = split_equal(Decimal(total), count)
                self.assertEqual(sum(terms), Decimal(total))
                self.assertTrue(all(t == t.quantize(Decimal('0.01'))
                        for t in terms))
                self.assertTrue(terms[-1] >= terms[0])

    @with_transaction()
    def test_terms_edited_by_hand_must_sum_to_the_total(self):
        "Hand-edited amounts that do not add up refuse to start"
        pool = Pool()
        Plan = pool.get('payt.plan')
        Term = pool.get('payt.plan.term')
        administration, found = self._setup()
        plan = self._plan(administration, [found['I1'], found['I2']],
            terms=2)
        self.assertEqual(plan.total, Decimal('200.00'))
        first, second = sorted(plan.terms, key=lambda t: t.due_date)
        Term.write([first], {'amount': Decimal('150.00')})
        Plan.write([plan], {'split': 'manual', 'frequency': 'custom'})
        with self.assertRaises(UserError):
            Plan.start([fresh(plan)])
        Term.write([second], {'amount': Decimal('50.00'),
                'due_date': TODAY + days(40)})
        Plan.start([fresh(plan)])
        plan = fresh(plan)
        self.assertEqual(plan.state, 'running')
        self.assertEqual([t.amount for t in plan.terms],
            [Decimal('150.00'), Decimal('50.00')])
        self.assertEqual([t.number for t in plan.terms], [1, 2])

    @with_transaction()
    def test_plan_of_one_debtor_only(self):
        "A plan over items of two debtors is refused"
        Pool().get('payt.plan')
        PlanLine = Pool().get('payt.plan.line')
        administration, found = self._setup()
        plan = self._plan(administration, [found['I1']])
        with self.assertRaises(DomainValidationError):
            PlanLine.create([{'plan': plan.id, 'item': found['OTHER'].id,
                        'amount': Decimal('121.00')}])

    @with_transaction()
    def test_running_plan_pauses_items_and_sends_schedule(self):
        "While the plan runs its items leave the flow; the debtor gets it"
        Plan = Pool().get('payt.plan')
        administration, found = self._setup()
        plan = self._plan(administration, [found['I1']])
        Plan.start([plan])
        self.assertEqual(fresh(found['I1']).follow_up, 'paused')
        self.assertEqual(fresh(found['I2']).follow_up, 'active')
        self.assertEqual(len(self.outbox), 1)
        mail = self.outbox[0]
        self.assertEqual(mail['To'], 'debtor-D1@example.com')
        body = mail.get_content()
        self.assertIn('/payt/portal/', body)
        self.assertIn('EUR 33,33', body)
        self.assertIn('EUR 33,34', body)
        run(administration, TODAY)
        self.assertIsNone(fresh(found['I1']).step)
        self.assertIsNotNone(fresh(found['I2']).step)
        kinds = [e.kind for e in fresh(found['I1']).events]
        self.assertIn('plan', kinds)

    @with_transaction()
    def test_reminder_before_each_term_also_when_paused(self):
        "Term reminders go out N days before, even when everything is paused"
        pool = Pool()
        Plan = pool.get('payt.plan')
        Pause = pool.get('payt.pause')
        administration, found = self._setup()
        plan = self._plan(administration, [found['I1']], terms=2,
            start=TODAY + days(5), reminder_days=3)
        Plan.start([plan])
        Pause.hold([administration], 'pause', "Holidays")
        Pause.hold([found['I1'].debtor], 'pause', "Dispute")
        self.outbox.clear()
        run_and_send(administration, TODAY + days(1))
        self.assertEqual(self.outbox, [])
        # A dry run previews the reminder and sends nothing.
        preview = run(administration, TODAY + days(2), dry_run=True)
        self.assertEqual(preview['plans']['reminders'], 1)
        self.assertEqual(self.outbox, [])
        self.assertIsNone(sorted(fresh(plan).terms,
                key=lambda t: t.number)[0].reminder_date)
        summary = run_and_send(administration, TODAY + days(2))
        self.assertEqual(summary['state'], 'paused')
        self.assertEqual(summary['plans']['reminders'], 1)
        self.assertEqual(len(self.outbox), 1)
        self.assertIn('term 1', self.outbox[0]['Subject'].lower().replace(
                'termijn', 'term'))
        # Exactly once per term.
        run_and_send(administration, TODAY + days(3))
        self.assertEqual(len(self.outbox), 1)
        term = sorted(fresh(plan).terms, key=lambda t: t.number)[0]
        self.assertEqual(term.reminder_date, TODAY + days(2))

    @with_transaction()
    def test_payments_apply_to_terms_in_order_and_complete(self):
        "A payment fills the first term, then the next; all paid completes"
        Plan = Pool().get('payt.plan')
        administration, found = self._setup(amounts=('121.00',))
        plan = self._plan(administration, [found['I1']], terms=3)
        Plan.start([plan])
        self._pay(administration, 'I1', 'D1', '71.00', payment='BANK-1')
        run(administration, TODAY)
        terms = sorted(fresh(plan).terms, key=lambda t: t.number)
        self.assertEqual([t.amount for t in terms],
            [Decimal('40.33'), Decimal('40.33'), Decimal('40.34')])
        self.assertEqual([t.paid_amount for t in terms],
            [Decimal('40.33'), Decimal('9.67'), Decimal('0')])
        self.assertEqual([t.state for t in terms], ['paid', 'open', 'open'])
        self.assertEqual(fresh(plan).remaining, Decimal('71.00'))
        self._pay(administration, 'I1', 'D1', '0.00', payment='BANK-2')
        run(administration, TODAY)
        plan = fresh(plan)
        self.assertEqual(plan.state, 'completed')
        self.assertEqual(fresh(found['I1']).follow_up, 'active')

    @with_transaction()
    def test_missed_term_raises_attention(self):
        "An unpaid term past its date raises 'payment plan term expired'"
        pool = Pool()
        Plan = pool.get('payt.plan')
        Attention = pool.get('payt.attention')
        administration, found = self._setup()
        plan = self._plan(administration, [found['I1']], terms=2,
            start=TODAY + days(5))
        Plan.start([plan])
        run(administration, TODAY + days(5))
        self.assertFalse(Attention.search(
                [('reason', '=', 'plan_term_expired')]))
        summary = run(administration, TODAY + days(6))
        self.assertEqual(summary['plans']['expired'], 1)
        attention, = Attention.search([('reason', '=', 'plan_term_expired')])
        self.assertEqual(attention.debtor, found['I1'].debtor)
        plan = fresh(plan)
        self.assertEqual(plan.state, 'running')
        self.assertEqual([t.state for t in sorted(plan.terms,
                        key=lambda t: t.number)], ['expired', 'open'])
        # The item stays paused: the plan keeps running.
        self.assertEqual(fresh(found['I1']).follow_up, 'paused')

    @with_transaction()
    def test_missed_term_breaks_the_plan_by_setting(self):
        "With 'break on missed term' the flow resumes where it stood"
        Plan = Pool().get('payt.plan')
        administration, found = self._setup()
        run(administration, TODAY)
        step = fresh(found['I1']).step
        self.assertIsNotNone(step)
        plan = self._plan(administration, [found['I1']], terms=2,
            start=TODAY + days(5), break_on_missed=True)
        Plan.start([plan])
        summary = run(administration, TODAY + days(6))
        self.assertEqual(summary['plans']['broken'], 1)
        self.assertEqual(fresh(plan).state, 'broken')
        item_now = fresh(found['I1'])
        self.assertEqual(item_now.follow_up, 'active')
        # Resumed where it stood: the step it had, then onwards.
        self.assertGreaterEqual(item_now.step.lead_days, step.lead_days)

    @with_transaction()
    def test_cancel_resumes_the_flow_where_it_stood(self):
        "Cancelling lifts the plan's pause and nothing else"
        pool = Pool()
        Plan = pool.get('payt.plan')
        Pause = pool.get('payt.pause')
        administration, found = self._setup()
        run(administration, TODAY)
        step = fresh(found['I1']).step
        own, = Pause.hold([found['I2']], 'pause', "Own pause")
        plan = self._plan(administration, [found['I1'], found['I2']])
        Plan.start([plan])
        run(administration, TODAY + days(1))
        self.assertEqual(fresh(found['I1']).step, step)
        Plan.cancel([fresh(plan)])
        self.assertEqual(fresh(plan).state, 'cancelled')
        self.assertEqual(fresh(found['I1']).follow_up, 'active')
        self.assertEqual(fresh(found['I1']).step, step)
        # The item's own pause is not the plan's to lift.
        self.assertEqual(fresh(found['I2']).follow_up, 'paused')
        self.assertEqual(fresh(own).state, 'active')

    @with_transaction()
    def test_create_wizard_from_items_of_one_debtor(self):
        "The wizard makes a draft plan with equal terms"
        pool = Pool()
        Wizard = pool.get('payt.plan.create', type='wizard')
        Plan = pool.get('payt.plan')
        administration, found = self._setup()
        session_id, _, _ = Wizard.create()
        wizard = Wizard(session_id)
        from trytond.transaction import Transaction
        with Transaction().set_context(active_model='payt.item',
                active_ids=[found['I1'].id, found['I2'].id],
                active_id=found['I1'].id):
            wizard = Wizard(session_id)
            defaults = wizard.default_start(None)
            self.assertEqual(defaults['debtor'], found['I1'].debtor.id)
            wizard.start.number_of_terms = 4
            wizard.start.start_date = TODAY + days(3)
            wizard.start.reminder_days = 2
            wizard.start.break_on_missed = False
            wizard.do_create_({})
        plan, = Plan.search([])
        self.assertEqual(plan.total, Decimal('200.00'))
        self.assertEqual(len(plan.terms), 4)
        with Transaction().set_context(active_model='payt.item',
                active_ids=[found['I1'].id, found['OTHER'].id],
                active_id=found['I1'].id):
            wizard = Wizard(session_id)
            with self.assertRaises(UserError):
                wizard.default_start(None)


class MessageTestCase(unittest.TestCase):
    "Messages between creditor and debtor"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        activate_module('payt_dunning')

    def setUp(self):
        super().setUp()
        self.outbox = Outbox()
        patcher = patch('trytond.modules.payt_dunning.providers.smtp.'
            'get_smtp_server', self.outbox)
        patcher.start()
        self.addCleanup(patcher.stop)

    @with_transaction()
    def test_thread_notifications_and_read_state(self):
        "Creditor writes: email; debtor writes: attention until read"
        pool = Pool()
        Administration = pool.get('payt.administration')
        Message = pool.get('payt.message')
        Attention = pool.get('payt.attention')
        administration = create_administration()
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1', language='en')],
                'items': [item('I1', 'D1', TODAY - days(3))]})
        invoice = items_by_external_id(administration)['I1']
        out, = Message.create([{'administration': administration.id,
                    'debtor': invoice.debtor.id, 'item': invoice.id,
                    'body': "Could you confirm the delivery date?"}])
        self.assertEqual(out.direction, 'out')
        self.assertTrue(out.emailed)
        mail, = self.outbox
        self.assertEqual(mail['Subject'], "New message from %s"
            % administration.company.rec_name)
        self.assertIn("about invoice F-I1", mail.get_content())
        self.assertIn('/payt/portal/', mail.get_content())
        incoming, = Message.create([{'administration': administration.id,
                    'debtor': invoice.debtor.id, 'item': invoice.id,
                    'direction': 'in', 'author': 'Debtor',
                    'body': "Delivered on Monday."}])
        attention, = Attention.search([('reason', '=', 'unread_message')])
        self.assertEqual(attention.item, invoice)
        self.assertEqual(len(self.outbox), 1)
        kinds = [e.kind for e in fresh(invoice).events]
        self.assertEqual(kinds.count('message'), 2)
        self.assertEqual([m.body for m in fresh(invoice).messages],
            ["Could you confirm the delivery date?", "Delivered on Monday."])
        Message.mark_read([incoming])
        self.assertTrue(fresh(incoming).seen)
        self.assertEqual(fresh(attention).state, 'resolved')
        # Back-office staff (not consultants) write from the client.
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        staff, = User.create([{'name': "Anna", 'login': 'anna',
                    'companies': [('add', [administration.company.id])],
                    'company': administration.company.id,
                    'groups': [('add', [ModelData.get_id(
                                    'payt_dunning', 'group_payt')])]}])
        with Transaction().set_user(staff.id), \
                Transaction().set_context(_check_access=True,
                    company=administration.company.id):
            answer, = Message.create([{
                        'administration': administration.id,
                        'debtor': invoice.debtor.id, 'item': invoice.id,
                        'body': "Thanks!"}])
            self.assertEqual(answer.author, "Anna")
        self.assertEqual(len(self.outbox), 2)

    @with_transaction()
    def test_message_on_another_debtors_item_is_refused(self):
        "An item of another debtor cannot carry the message"
        pool = Pool()
        Administration = pool.get('payt.administration')
        Message = pool.get('payt.message')
        administration = create_administration()
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1'), debtor('D2')],
                'items': [item('I1', 'D1', TODAY)]})
        found = items_by_external_id(administration)
        other = pool.get('payt.debtor').search([('external_id', '=', 'D2')])
        with self.assertRaises(Exception):
            Message.create([{'administration': administration.id,
                        'debtor': other[0].id, 'item': found['I1'].id,
                        'body': "x"}])
