# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The daily run: steps, lead times, minimum amounts, pauses, dry runs and
exactly-once communications."""
import unittest
from decimal import Decimal

from trytond.pool import Pool
from trytond.tests.test_tryton import with_transaction

from .test_case_delivery import Outbound
from .tools import (
    TODAY, create_administration, days, debtor, item, items_by_external_id,
    run, steps)


def fresh(record):
    "The record as stored now."
    return record.__class__(record.id)


def communications(item_record):
    return sorted((c.step.lead_days, c.channel)
        for c in fresh(item_record).communications)


def event_kinds(item_record):
    return [(e.kind, e.step.lead_days if e.step else None)
        for e in fresh(item_record).events if e.kind in ('step', 'skipped')]


class RunTestCase(Outbound, unittest.TestCase):
    "The daily run"

    def _import(self, administration, items, debtors=None):
        Administration = Pool().get('payt.administration')
        debtors = debtors or [debtor('D1'), debtor('D2', 'consumer')]
        return Administration.import_batch(administration.id,
            {'debtors': debtors, 'items': items})

    @with_transaction()
    def test_items_move_to_the_step_they_are_due_for(self):
        "Each item lands on the latest step due; earlier ones are skipped"
        administration = create_administration()
        self._import(administration, [
                item('not-due', 'D1', TODAY + days(5)),
                item('pre-due', 'D1', TODAY + days(3)),
                item('first', 'D1', TODAY - days(7)),
                item('first-late', 'D1', TODAY - days(10)),
                item('second', 'D1', TODAY - days(14)),
                item('final', 'D2', TODAY - days(30)),
                item('collection', 'D2', TODAY - days(38)),
                ])
        summary = run(administration, TODAY)
        found = items_by_external_id(administration)
        step_of = {k: (i.step.lead_days if i.step else None)
            for k, i in found.items()}
        self.assertEqual(step_of, {
                'not-due': None, 'pre-due': -3, 'first': 7,
                'first-late': 7, 'second': 14, 'final': 21,
                'collection': 38})
        # An item seen for the first time at +30 skips the earlier steps
        # with a reason on its timeline, and gets only the final notice.
        self.assertEqual(event_kinds(found['final']), [('step', 21)])
        reached, = [e for e in found['final'].events if e.kind == 'step']
        self.assertEqual(reached.description,
            "Step reached: Final demand. Skipped, as a later step was "
            "already due: Friendly reminder before the due date, "
            "First reminder, Second reminder.")
        self.assertEqual(communications(found['final']),
            [(21, 'email'), (21, 'letter')])
        self.assertEqual(communications(found['first']), [(7, 'email')])
        # Hand-over to collection has no channel: recorded, nothing sent.
        self.assertEqual(communications(found['collection']), [])
        self.assertEqual(found['not-due'].next_step.lead_days, -3)
        self.assertEqual(found['not-due'].next_date, TODAY + days(2))
        self.assertEqual(found['first'].next_date, TODAY + days(7))
        self.assertEqual(summary['items_moved'], 6)
        self.assertEqual(summary['communications'], 6)
        overtaken = {s['lead_days']: s['skipped_overtaken']
            for s in summary['steps']}
        self.assertEqual(overtaken, {-3: 5, 7: 3, 14: 2, 21: 1, 38: 0})
        moved = {s['lead_days']: s['moved'] for s in summary['steps']}
        self.assertEqual(moved, {-3: 1, 7: 2, 14: 1, 21: 1, 38: 1})
        amounts = {s['lead_days']: s['amount'] for s in summary['steps']}
        self.assertEqual(amounts[7], '242.00')
        # An item that moves one step at a time skips nothing.
        run(administration, TODAY + days(7))
        moved, = [e for e in fresh(found['first']).events
            if e.kind == 'step' and e.step.lead_days == 14]
        self.assertEqual(moved.description,
            "Step reached: Second reminder.")

    @with_transaction()
    def test_rerun_for_the_same_date_creates_nothing(self):
        "Running twice for one date moves and sends nothing the second time"
        pool = Pool()
        Communication = pool.get('payt.communication')
        Event = pool.get('payt.event')
        administration = create_administration()
        self._import(administration, [
                item('a', 'D1', TODAY - days(8)),
                item('b', 'D2', TODAY - days(25)),
                ])
        run(administration, TODAY)
        before = (Communication.search_count([]), Event.search_count([]))
        again = run(administration, TODAY)
        self.assertEqual(again['items_moved'], 0)
        self.assertEqual(again['communications'], 0)
        self.assertEqual(
            (Communication.search_count([]), Event.search_count([])), before)

    @with_transaction()
    def test_daily_runs_send_every_step_once(self):
        "Run every day for seven weeks: each step communicates exactly once"
        administration = create_administration()
        due = TODAY - days(40)
        self._import(administration, [item('a', 'D1', due)])
        for offset in range(-10, 41):
            run(administration, due + days(offset))
        found = items_by_external_id(administration)['a']
        self.assertEqual(event_kinds(found), [
                ('step', -3), ('step', 7), ('step', 14), ('step', 21),
                ('step', 38)])
        self.assertEqual(communications(found), [
                (-3, 'email'), (7, 'email'), (14, 'email'), (21, 'email'),
                (21, 'letter')])
        dates = {c.step.lead_days: c.run_date for c in found.communications}
        self.assertEqual(dates[7], due + days(7))
        self.assertEqual(dates[-3], due - days(3))

    @with_transaction()
    def test_step_below_minimum_amount_is_skipped_with_reason(self):
        "A step's minimum amount skips small items, visibly"
        pool = Pool()
        Step = pool.get('payt.flow.step')
        Attention = pool.get('payt.attention')
        administration = create_administration()
        first = steps(administration)[7]
        Step.write([first], {'min_amount': Decimal('50.00')})
        self._import(administration, [
                item('small', 'D1', TODAY - days(7), amount='20.00'),
                item('large', 'D1', TODAY - days(7), amount='50.00'),
                ])
        summary = run(administration, TODAY)
        found = items_by_external_id(administration)
        self.assertEqual(communications(found['small']), [])
        self.assertEqual(communications(found['large']), [(7, 'email')])
        self.assertEqual(found['small'].step, first)
        skipped, = [e for e in fresh(found['small']).events
            if e.kind == 'skipped']
        self.assertEqual(skipped.description,
            "Skipped: open amount below the step's minimum of EUR 50.00: "
            "First reminder. Skipped, as a later step was already due: "
            "Friendly reminder before the due date.")
        step_summary = [s for s in summary['steps'] if s['lead_days'] == 7][0]
        self.assertEqual(step_summary['skipped_below_minimum'], 1)
        self.assertEqual(step_summary['moved'], 1)
        self.assertEqual(
            [a.item for a in Attention.search(
                    [('reason', '=', 'below_minimum')])], [found['small']])
        # The next step, without minimum, reaches the small item again.
        run(administration, TODAY + days(7))
        self.assertEqual(communications(found['small']), [(14, 'email')])

    @with_transaction()
    def test_pause_at_each_level_holds_and_end_date_resumes(self):
        "Paused items, debtors and administrations get nothing until resumed"
        pool = Pool()
        Pause = pool.get('payt.pause')
        pool.get('payt.item')
        Debtor = pool.get('payt.debtor')
        administration = create_administration()
        self._import(administration, [
                item('held-item', 'D1', TODAY - days(8)),
                item('free-item', 'D1', TODAY - days(8)),
                item('held-debtor', 'D2', TODAY - days(8)),
                ])
        found = items_by_external_id(administration)
        d2, = Debtor.search([('external_id', '=', 'D2')])
        Pause.hold([found['held-item']], 'pause', "Disputed by phone",
            end_date=TODAY + days(2))
        Pause.hold([d2], 'pause', "Debtor in hospital")
        run(administration, TODAY)
        self.assertEqual(communications(found['held-item']), [])
        self.assertEqual(communications(found['held-debtor']), [])
        self.assertEqual(communications(found['free-item']), [(7, 'email')])
        self.assertEqual(fresh(found['held-item']).follow_up, 'paused')
        self.assertEqual(fresh(found['held-debtor']).follow_up, 'paused')
        paused = [e for e in fresh(found['held-debtor']).events
            if e.kind == 'paused']
        self.assertIn("Debtor in hospital", paused[0].description)
        self.assertEqual(paused[0].user.id, 1)

        # On the end date itself the item is still paused ...
        run(administration, TODAY + days(2))
        self.assertEqual(communications(found['held-item']), [])
        # ... the day after, it resumes by itself and catches up.
        summary = run(administration, TODAY + days(3))
        self.assertEqual(summary['resumed'], 1)
        self.assertEqual(communications(found['held-item']), [(7, 'email')])
        self.assertTrue(any(e.kind == 'resumed'
                and 'automatically' in e.description
                for e in fresh(found['held-item']).events))
        self.assertEqual(communications(found['held-debtor']), [])

        Debtor.resume([d2])
        run(administration, TODAY + days(3))
        self.assertEqual(communications(found['held-debtor']), [(7, 'email')])

        # The whole administration: nothing moves for anyone.
        Pause.hold([administration], 'pause', "Holidays",
            end_date=TODAY + days(10))
        summary = run(administration, TODAY + days(7))
        self.assertEqual(summary['state'], 'paused')
        self.assertEqual(communications(found['free-item']), [(7, 'email')])
        summary = run(administration, TODAY + days(11))
        self.assertEqual(summary['state'], 'done')
        self.assertEqual(communications(found['free-item']),
            [(7, 'email'), (14, 'email')])

    @with_transaction()
    def test_stop_holds_until_resumed_by_hand(self):
        "A stopped item never resumes by itself"
        pool = Pool()
        Pause = pool.get('payt.pause')
        Item = pool.get('payt.item')
        administration = create_administration()
        self._import(administration, [item('a', 'D1', TODAY - days(8))])
        found = items_by_external_id(administration)['a']
        Pause.hold([found], 'stop', "Customer went bankrupt",
            end_date=TODAY)
        run(administration, TODAY + days(20))
        self.assertEqual(communications(found), [])
        self.assertEqual(fresh(found).follow_up, 'stopped')
        Item.resume([found])
        self.assertEqual(fresh(found).follow_up, 'active')
        run(administration, TODAY + days(20))
        self.assertEqual(communications(found), [(21, 'email'),
                (21, 'letter')])

    @with_transaction()
    def test_dry_run_shows_the_run_and_changes_nothing(self):
        "A dry run reports exactly what the real run then does"
        pool = Pool()
        Communication = pool.get('payt.communication')
        Event = pool.get('payt.event')
        Pause = pool.get('payt.pause')
        administration = create_administration()
        later = TODAY + days(5)
        self._import(administration, [
                item('a', 'D1', later - days(8)),
                item('b', 'D2', later - days(22)),
                item('c', 'D2', later - days(1)),
                ])
        found = items_by_external_id(administration)
        Pause.hold([found['c']], 'pause', "Wait", end_date=TODAY + days(1))
        counts = (Communication.search_count([]), Event.search_count([]))
        preview = run(administration, later, dry_run=True)
        self.assertEqual(preview['resumed'], 1)
        self.assertEqual(
            (Communication.search_count([]), Event.search_count([])), counts)
        self.assertEqual(
            [i.step for i in items_by_external_id(administration).values()],
            [None, None, None])
        self.assertEqual(Pause.search_count([('state', '=', 'active')]), 1)
        real = run(administration, later)
        self.assertTrue(preview['dry_run'])
        self.assertFalse(real['dry_run'])
        for summary in (preview, real):
            del summary['dry_run']
        self.assertEqual(preview, real)
        self.assertEqual(real['communications'], 4)

    @with_transaction()
    def test_paid_and_negative_items_are_not_reminded(self):
        "Paid items and credit notes get no reminder"
        administration = create_administration()
        self._import(administration, [
                item('paid', 'D1', TODAY - days(8), open_amount='0'),
                item('credit', 'D1', TODAY - days(8), amount='-50.00'),
                ])
        run(administration, TODAY)
        found = items_by_external_id(administration)
        self.assertEqual(found['paid'].state, 'paid')
        self.assertEqual(communications(found['paid']), [])
        self.assertEqual(communications(found['credit']), [])

    @with_transaction()
    def test_final_notice_text_states_the_statutory_costs(self):
        "The consumer's final notice names the exact costs and the term"
        pool = Pool()
        Communication = pool.get('payt.communication')
        administration = create_administration()
        self._import(administration, [
                item('a', 'D2', TODAY - days(21), amount='1000.00'),
                item('b', 'D2', TODAY - days(21), amount='1234567.89')])
        run(administration, TODAY)
        email, large = Communication.search([
                ('item.administration', '=', administration.id),
                ('channel', '=', 'email'),
                ], order=[('item.external_id', 'ASC')])
        subject, body = email.render()
        self.assertIn('EUR 1.234.567,89', large.render()[1])
        self.assertIn('EUR 6.775,00', large.render()[1])
        self.assertIn('veertiendagenbrief', subject)
        self.assertIn('incassokosten verschuldigd van EUR 150,00', body)
        self.assertIn('vanaf de dag nadat deze brief bij u is bezorgd', body)
        self.assertIn('Debtor D2', body)

    @with_transaction()
    def test_dashboard_counts_items_per_step(self):
        "The dashboard shows the number and amount of items per step"
        pool = Pool()
        Summary = pool.get('payt.dashboard.step')
        Ageing = pool.get('payt.dashboard.ageing')
        administration = create_administration()
        self._import(administration, [
                item('a', 'D1', TODAY - days(8), amount='100.00'),
                item('b', 'D1', TODAY - days(9), amount='50.00'),
                item('c', 'D1', TODAY + days(20), amount='10.00'),
                ])
        run(administration, TODAY)
        rows = {r.step.lead_days if r.step else None: (r.count, r.amount)
            for r in Summary.search(
                [('administration', '=', administration.id)])}
        self.assertEqual(rows, {7: (2, Decimal('150.00')),
                None: (1, Decimal('10.00'))})
        buckets = {r.bucket: r.count for r in Ageing.search(
                [('administration', '=', administration.id)])}
        self.assertEqual(buckets, {'1_1_30': 2, '0_not_due': 1})
