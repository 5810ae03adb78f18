# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Collection cases: hand-over, the 14-day letter, costs, interest,
payments, exactly-once letters and the dossier."""
import datetime
import io
import json
import unittest
from contextlib import contextmanager
import zipfile
from decimal import Decimal
from decimal import Decimal as D

from trytond.exceptions import UserError
from trytond.model.exceptions import ValidationError
from trytond.pool import Pool
from trytond.tests.test_tryton import with_transaction
from trytond.transaction import Transaction

from .. import law
from ..letter import LetterContent, LetterLine, render_letter
from .test_case_delivery import Outbound
from .tools import (
    TODAY, create_administration, days, debtor, item, items_by_external_id,
    run)


def fresh(record):
    return record.__class__(record.id)


class CaseTestCase(Outbound, unittest.TestCase):
    "Collection cases"

    def _setup(self, items=None, debtors=None):
        Administration = Pool().get('payt.administration')
        administration = create_administration()
        debtors = debtors or [debtor('B1'),
            debtor('C1', 'consumer', street="Dorpsstraat 1", city="Utrecht"),
            debtor('C2', 'consumer', language='en')]
        items = items or [
            item('b-1', 'B1', TODAY - days(40), '1500.00'),
            item('c-1', 'C1', TODAY - days(40), '2500.00'),
            item('c-2', 'C1', TODAY - days(45), '2500.00'),
            item('c-3', 'C2', TODAY - days(10), '300.00'),
            ]
        Administration.import_batch(administration.id,
            {'debtors': debtors, 'items': items})
        return administration

    def _cases(self, administration):
        Case = Pool().get('payt.case')
        return {c.debtor.external_id: c for c in Case.search(
                [('administration', '=', administration.id)])}

    @with_transaction()
    def test_rate_table_is_the_csv(self):
        "The interest rate records are the legal doc's table"
        Rate = Pool().get('payt.interest.rate')
        # With its source: `payt interest` (the CSV) and the cases (the
        # records) compute with the same rows.
        stored = [(r.start_date, r.consumer_rate, r.commercial_rate,
                r.confidence, r.source_note) for r in Rate.table()]
        expected = [(r.start_date, r.consumer_rate, r.commercial_rate,
                r.confidence, r.source_note) for r in law.load_rates()]
        self.assertEqual(stored, expected)
        with self.assertRaises(ValidationError):
            Rate.create([{'start_date': TODAY, 'consumer_rate': -1,
                        'commercial_rate': 1}])

    @with_transaction()
    def test_flow_hands_over_one_case_per_debtor(self):
        "Items on the collection step become one case per debtor"
        administration = self._setup()
        summary = run(administration, TODAY)
        cases = self._cases(administration)
        self.assertEqual(set(cases), {'B1', 'C1'})
        consumer, business = cases['C1'], cases['B1']
        self.assertEqual(len(consumer.items), 2)
        self.assertEqual(consumer.principal, Decimal('5000.00'))
        self.assertEqual(consumer.state, 'reminder')
        self.assertEqual(summary['cases']['opened_items'], 3)
        # Consumer: a 14-day letter over the principals added up
        # (art. 6:96 lid 7): 625.00, not 2 x 375.00; no costs yet.
        letter, = consumer.letters
        self.assertTrue(letter.fourteen_day)
        self.assertEqual(letter.costs_stated, Decimal('625.00'))
        self.assertEqual(letter.wording, law.TERM_WORDING_NL)
        self.assertEqual(letter.channel, 'post')
        self.assertGreater(letter.receipt_date, letter.date)
        self.assertTrue(letter.pdf.startswith(b'%PDF'))
        self.assertEqual(consumer.costs, ())
        # Business: costs due at once (art. 6:96 lid 4), no 14-day letter.
        cost, = business.costs
        self.assertEqual(cost.total, Decimal('225.00'))
        self.assertFalse(business.letters[0].fourteen_day)
        # The letter is on each item's timeline with the PDF attached.
        Attachment = Pool().get('ir.attachment')
        found = items_by_external_id(administration)
        sent = [e for e in found['c-1'].events if e.kind == 'sent']
        self.assertEqual(len(sent), 1)
        attachment, = Attachment.search([('resource', '=', str(sent[0]))])
        self.assertTrue(attachment.data.startswith(b'%PDF'))

    @with_transaction()
    def test_letters_exactly_once(self):
        "Running twice or overlapping produces no second letter"
        Letter = Pool().get('payt.case.letter')
        administration = self._setup()
        run(administration, TODAY)
        count = Letter.search_count([])
        run(administration, TODAY)
        run(administration, TODAY + days(1))
        self.assertEqual(Letter.search_count([]), count)
        self.assertEqual(len(self._cases(administration)), 2)

    @with_transaction()
    def test_dry_run_opens_nothing(self):
        "A dry run previews the cases and rolls them back"
        Case = Pool().get('payt.case')
        administration = self._setup()
        summary = run(administration, TODAY, dry_run=True)
        self.assertEqual(summary['cases']['opened_items'], 3)
        self.assertEqual(Case.search_count([]), 0)

    @with_transaction()
    def test_consumer_costs_need_the_letter_and_its_term(self):
        "No costs without a valid 14-day letter, nor before its term ends"
        pool = Pool()
        Case = pool.get('payt.case')
        Item = pool.get('payt.item')
        administration = self._setup()
        c3, = Item.search([('external_id', '=', 'c-3')])
        case, = Case.open_for_items([c3], TODAY)
        self.assertEqual(case.state, 'new')
        self.assertEqual(fresh(c3).step.action, 'collection')
        with self.assertRaisesRegex(UserError, '14-day letter was sent'):
            Case.add_costs([case])
        Case.escalate([case])
        case = fresh(case)
        letter, = case.letters
        self.assertEqual(letter.wording, law.TERM_WORDING_EN)
        with self.assertRaisesRegex(UserError, 'term ends on'):
            Case.add_costs([case])
        # The run neither charges nor escalates during the term ...
        day_before = letter.costs_chargeable_from - days(1)
        Case.escalate_all(administration, day_before)
        case = fresh(case)
        self.assertEqual((case.state, case.costs), ('reminder', ()))
        # ... and does both once the term has passed unpaid.
        Case.escalate_all(administration, letter.costs_chargeable_from)
        case = fresh(case)
        cost, = case.costs
        self.assertEqual(cost.total, Decimal('45.00'))
        self.assertEqual(cost.letter, letter)
        self.assertEqual(case.state, 'second_reminder')
        with self.assertRaises(UserError):
            Case.open_for_items([fresh(c3)])

    @with_transaction()
    def test_every_figure_stores_its_inputs(self):
        "Costs, interest and allocations recompute from what they store"
        Case = Pool().get('payt.case')
        administration = self._setup()
        run(administration, TODAY)
        case = self._cases(administration)['B1']
        Case.compute_interest([case], TODAY + days(400))
        case = fresh(case)
        for cost in case.costs:
            result = cost.recompute()
            self.assertEqual(result.total, cost.total)
            self.assertEqual(result.principal, cost.principal)
            self.assertEqual(result.rule, cost.rule)
            self.assertIn('brackets', json.loads(cost.inputs))
        line, = case.interests
        self.assertEqual(line.kind, 'commercial')
        self.assertEqual(line.start, TODAY - days(39))
        self.assertTrue(json.loads(line.inputs)['capitalisations'])
        self.assertEqual(line.recompute().interest, line.amount)
        self.assertIn('6:119a', line.rule)
        self.assertTrue(json.loads(line.rates))

    @with_transaction()
    def test_payments_go_to_costs_interest_principal(self):
        "A payment is allocated costs, interest, principal (6:44 BW)"
        CasePayment = Pool().get('payt.case.payment')
        administration = self._setup()
        run(administration, TODAY)
        case = self._cases(administration)['B1']
        payment, = CasePayment.create([{'case': case.id,
                    'date': TODAY + days(30), 'amount': Decimal('300.00')}])
        case = fresh(case)
        interest = case.interest_amount
        self.assertGreater(interest, 0)
        self.assertEqual(payment.to_costs, Decimal('225.00'))
        self.assertEqual(payment.to_interest, interest)
        self.assertEqual(payment.to_principal,
            Decimal('75.00') - interest)
        self.assertEqual(case.remaining_costs, 0)
        self.assertEqual(case.remaining_interest, 0)
        self.assertEqual(case.remaining_principal,
            Decimal('1500.00') - payment.to_principal)
        self.assertEqual(json.loads(payment.inputs)['rule'],
            law.RULE_ALLOCATION)
        # The principal changed: the item's one line runs on from the
        # default, on what is left from the payment day on.
        Case = Pool().get('payt.case')
        Case.compute_interest([case], TODAY + days(60))
        case = fresh(case)
        line, = case.interests
        self.assertFalse(line.closed)
        self.assertEqual(line.principal, Decimal('1500.00'))
        self.assertEqual(line.start, TODAY - days(39))
        after = [p['base'] for p in json.loads(line.inputs)['periods']
            if p['start'] >= (TODAY + days(30)).isoformat()]
        self.assertEqual(after[0], str(case.remaining_principal))
        self.assertEqual(line.recompute().interest, line.amount)
        # Paying the rest closes the case as paid.
        CasePayment.create([{'case': case.id, 'date': TODAY + days(30),
                    'amount': case.remaining_total}])
        Case.escalate_all(administration, TODAY + days(60))
        self.assertEqual(fresh(case).close_reason, 'paid')

    @with_transaction()
    def test_imported_payments_are_allocated(self):
        "A payment imported on an item of a case is a case payment"
        Administration = Pool().get('payt.administration')
        administration = self._setup()
        run(administration, TODAY)
        Administration.import_batch(administration.id, {'payments': [{
                        'external_id': 'BANK-1', 'item': 'b-1',
                        'date': TODAY.isoformat(), 'amount': '100.00'}]})
        run(administration, TODAY)
        payment, = self._cases(administration)['B1'].payments
        self.assertEqual(payment.to_costs, Decimal('100.00'))

    @with_transaction()
    def test_waive_costs_records_who_and_why(self):
        "Waiving needs a reason and records the user"
        Case = Pool().get('payt.case')
        administration = self._setup()
        run(administration, TODAY)
        case = self._cases(administration)['B1']
        with self.assertRaisesRegex(UserError, 'why'):
            Case.waive_costs([case])
        Case.write([case], {'waive_reason': "Goodwill"})
        Case.waive_costs([case])
        case = fresh(case)
        self.assertTrue(case.costs_waived)
        self.assertEqual(case.waived_by.id, Transaction().user)
        self.assertEqual(case.costs_amount, 0)
        self.assertEqual([c.state for c in case.costs], ['waived'])
        with self.assertRaisesRegex(UserError, 'waived'):
            Case.add_costs([case])

    @with_transaction()
    def test_vat_and_agreed_amount(self):
        "VAT only with its three conditions; agreed amount for business"
        Config = Pool().get('payt.case.configuration')
        administration = self._setup()
        config, = Config.create([{'administration': administration.id,
                    'vat_rate': Decimal('21'), 'vat_third_party': True,
                    'vat_no_deduction': True, 'vat_stated': True,
                    'business_costs': 'agreed',
                    'business_agreed_amount': Decimal('99.00')}])
        with self.assertRaisesRegex(ValidationError, 'three conditions'):
            Config.write([config], {'vat_stated': False})
        Config.write([config], {'vat_stated': True})
        run(administration, TODAY)
        cases = self._cases(administration)
        cost, = cases['B1'].costs
        self.assertEqual(cost.total, Decimal('99.00'))
        self.assertIn('agreed', cost.rule)
        # Consumer: staffel 625.00 + 21 % VAT, stated in the letter.
        self.assertEqual(cases['C1'].letters[0].costs_stated,
            Decimal('756.25'))

    @with_transaction()
    def test_lead_times_pause_and_dossier(self):
        "Cases wait their lead time and pauses; the dossier is complete"
        pool = Pool()
        Case = pool.get('payt.case')
        Config = pool.get('payt.case.configuration')
        Pause = pool.get('payt.pause')
        administration = self._setup()
        Config.create([{'administration': administration.id,
                    'channel': 'email',
                    'steps': [('create', [
                                {'state': 'second_reminder',
                                    'lead_days': 20},
                                {'state': 'notice_of_default',
                                    'lead_days': 5},
                                {'state': 'ready', 'lead_days': 5}])]}])
        run(administration, TODAY)
        case = self._cases(administration)['C1']
        self.assertEqual(case.letters[0].receipt_date, TODAY)
        Pause.hold(list(case.items), 'pause', "Dispute")
        self.assertEqual(fresh(case).follow_up, 'paused')
        Case.escalate_all(administration, TODAY + days(20))
        self.assertEqual(fresh(case).state, 'reminder')
        Case.resume([case])
        with self.assertRaisesRegex(UserError, 'not ready'):
            Case.export_dossier([case])
        for offset in [20, 25, 30]:
            Case.escalate_all(administration, TODAY + days(offset))
        case = fresh(case)
        self.assertEqual(case.state, 'ready')
        self.assertEqual([l.step for l in case.letters],
            ['reminder', 'second_reminder', 'notice_of_default'])
        self.assertEqual(len(case.costs), 1)
        Case.export_dossier([case])
        case = fresh(case)
        archive = zipfile.ZipFile(io.BytesIO(case.dossier))
        names = archive.namelist()
        self.assertIn('summary.pdf', names)
        self.assertEqual(len([n for n in names if n.startswith('letters/')]),
            3)
        data = json.loads(archive.read('dossier.json'))
        self.assertEqual(len(data['letters']), 3)
        self.assertEqual(data['letters'][0]['received'],
            TODAY.isoformat())
        self.assertEqual(data['costs'][0]['total'], '625.00')
        self.assertTrue(data['interest'])
        self.assertIn('computation.json', names)
        Case.escalate([case])
        self.assertEqual(fresh(case).state, 'handed_over')

    def test_render_letter_in_both_languages(self):
        "The renderer makes a PDF for one debtor with several items"
        for language in ['nl', 'en']:
            pdf = render_letter(LetterContent(
                    sender="Bakkerij BV", sender_lines=["Dorpsstraat 1"],
                    recipient="Jan de Vries", recipient_lines=["Utrecht"],
                    date=TODAY, language=language, subject="Aanmaning",
                    paragraphs=["Een", "Twee"],
                    lines=[LetterLine('F1', TODAY, TODAY, Decimal('1.00'),
                            Decimal('1.00'))] * 3,
                    totals=[("Totaal", Decimal('3.00'))]))
            self.assertTrue(pdf.startswith(b'%PDF'))

    @with_transaction()
    def test_open_case_by_hand_from_a_debtor(self):
        "The debtor's action opens one case with its overdue items"
        pool = Pool()
        Debtor = pool.get('payt.debtor')
        Wizard = pool.get('payt.case.open', type='wizard')
        administration = self._setup()
        c1, = Debtor.search([('external_id', '=', 'C1')])
        session_id, _, _ = Wizard.create()
        with Transaction().set_context(active_model='payt.debtor',
                active_id=c1.id, active_ids=[c1.id]):
            result = Wizard.execute(session_id, {}, 'start')
        case = self._cases(administration)['C1']
        self.assertEqual(result['actions'][0][1]['res_id'], [case.id])
        self.assertEqual(case.principal, Decimal('5000.00'))
        self.assertEqual(case.state, 'new')

    # ------------------------------------------- issue 11: interest, joining

    def _case_on(self, principal, due, kind='business', opened=None):
        "One item of `principal` due on `due`, in a case opened by hand."
        pool = Pool()
        Administration = pool.get('payt.administration')
        Case = pool.get('payt.case')
        Item = pool.get('payt.item')
        administration = create_administration()
        Administration.import_batch(administration.id, {
                'debtors': [debtor('D1', kind)],
                'items': [item('d-1', 'D1', due, principal)]})
        items = Item.search([('external_id', '=', 'd-1')])
        case, = Case.open_for_items(items, opened or due + days(10))
        return case

    @with_transaction()
    def test_paid_interest_is_not_capitalised_again(self):
        "Interest paid before the anniversary stays out of the new base"
        # Issue 11, figures by hand in test_law.InterestAfterPaymentsTest:
        # business, 10,000 due 2024-12-31, in default from 2025-01-01; no
        # costs charged, so 183.29 paid on 2025-05-01 is all interest.
        # Up to 2026-03-01: year 1 = 1,064.59, of which 1,064.59 - 183.29
        # = 881.30 capitalised; 10881.30 x 10.15% x 59/365 = 178.53;
        # interest 1,243.12, still due 1,059.83.
        pool = Pool()
        Case = pool.get('payt.case')
        CasePayment = pool.get('payt.case.payment')
        case = self._case_on('10000.00', datetime.date(2024, 12, 31))
        payment, = CasePayment.create([{'case': case.id,
                    'date': datetime.date(2025, 5, 1),
                    'amount': Decimal('183.29')}])
        self.assertEqual((payment.to_costs, payment.to_interest,
                payment.to_principal), (0, Decimal('183.29'), 0))
        Case.compute_interest([case], datetime.date(2026, 3, 1))
        case = fresh(case)
        line, = case.interests
        self.assertEqual(line.amount, Decimal('1243.12'))
        self.assertEqual(case.remaining_interest, Decimal('1059.83'))
        self.assertEqual(case.remaining_total, Decimal('11059.83'))
        self.assertEqual(json.loads(line.inputs)['capitalisations'][0][
                'amount'], '881.30')

    @contextmanager
    def _as_anna(self, company):
        "Act as the back office's Anna over RPC: access checked."
        pool = Pool()
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        anna, = User.create([{'name': "Anna", 'login': 'anna',
                    'companies': [('add', [company.id])],
                    'company': company.id,
                    'groups': [('add', [ModelData.get_id(
                                    'payt_dunning', 'group_payt')])]}])
        transaction = Transaction()
        with transaction.set_user(anna.id):
            context = User.get_preferences(context_only=True)
            with transaction.set_context(context, _check_access=True):
                yield

    @with_transaction()
    def test_part_payment_keeps_the_year_of_default(self):
        "A principal payment does not restart the year of capitalisation"
        # Issue 11: the same case with 366.58 of interest on 2025-05-01
        # (10000 x 11.15% x 120/365) and 1,000 of principal paid that day.
        # Year 1 from 2025-01-01: 366.575342 + 9000 x 11.15% x 61/365
        # + 9000 x 10.15% x 184/365 = 994.79, less 366.58 paid = 628.21
        # capitalised on 2026-01-01; 9628.21 x 10.15% x 59/365 = 157.97;
        # interest 994.79 + 157.97 = 1,152.76 (was 1,142.45).
        # Anna of the back office registers the payment and computes.
        pool = Pool()
        Case = pool.get('payt.case')
        CasePayment = pool.get('payt.case.payment')
        case = self._case_on('10000.00', datetime.date(2024, 12, 31))
        with self._as_anna(case.company):
            payment, = CasePayment.create([{'case': case.id,
                        'date': datetime.date(2025, 5, 1),
                        'amount': Decimal('1366.58')}])
            self.assertEqual((payment.to_interest, payment.to_principal),
                (Decimal('366.58'), Decimal('1000.00')))
            with Transaction().set_context(
                    payt_case_date=datetime.date(2026, 3, 1)):
                Case.compute_interest([Case(case.id)])
        case = fresh(case)
        line, = case.interests
        self.assertEqual(line.amount, Decimal('1152.76'))
        self.assertEqual(line.start, datetime.date(2025, 1, 1))
        self.assertEqual(case.remaining_interest, Decimal('786.18'))
        self.assertEqual(case.remaining_principal, Decimal('9000.00'))
        self.assertEqual(line.recompute().interest, line.amount)

    @with_transaction()
    def test_interest_command_agrees_with_the_case_lines(self):
        "`payt interest` gives every interest line of the demo's cases"
        from ..case import build_cases
        pool = Pool()
        Case = pool.get('payt.case')
        CasePayment = pool.get('payt.case.payment')
        administration = self._setup(items=[
                item('b-1', 'B1', TODAY - days(70), '1500.00'),
                item('b-2', 'B1', TODAY - days(71), '700.00'),
                item('c-1', 'C1', TODAY - days(70), '2500.00'),
                item('c-2', 'C1', TODAY - days(75), '2500.00'),
                item('c-3', 'C2', TODAY - days(73), '300.00'),
                item('d-1', 'D1', TODAY - days(72), '900.00'),
                ], debtors=[debtor('B1'), debtor('C1', 'consumer'),
                debtor('C2', 'consumer', language='en'),
                debtor('D1', 'consumer')])
        # The demo's cases: replayed run, a payment, a waiver, a
        # write-off and a dossier; then payments of interest and of
        # principal, and a year and more of interest.
        run(administration, TODAY - days(20))
        build_cases(pool, [administration], TODAY)
        cases = Case.search([('state', '!=', 'closed')])
        self.assertGreaterEqual(len(cases), 2)
        for case in cases:
            CasePayment.create([{'case': case.id, 'date': TODAY + days(20),
                        'amount': fresh(case).remaining_costs
                        + Decimal('10.00')}])
            case = fresh(case)
            CasePayment.create([{'case': case.id, 'date': TODAY + days(50),
                        'amount': case.remaining_costs
                        + case.remaining_interest + Decimal('400.00')}])
        Case.compute_interest(Case.search([]), TODAY + days(500))
        lines = [l for c in Case.search([]) for l in c.interests]
        self.assertGreaterEqual(len(lines), 4)
        computed = [json.loads(l.inputs) for l in lines]
        # The set covers paid interest before an anniversary and paid
        # principal, not only plain accrual.
        self.assertTrue(any(c['paid'] != '0.00'
                for d in computed for c in d['capitalisations']))
        self.assertTrue(any(d['principal_paid'] != '0.00' for d in computed))
        for case in Case.search([('state', '!=', 'closed')]):
            per_item = sum((D(p['amount']) for l in case.interests
                    for p in json.loads(l.inputs)['payments']), Decimal(0))
            self.assertEqual(per_item, sum((p.to_interest + p.to_principal
                        for p in case.payments), Decimal(0)))
        for line in lines:
            data = json.loads(line.inputs)
            argv = ['interest', '--principal', str(line.principal),
                '--from', line.start.isoformat(), '--to',
                line.end.isoformat(), '--kind', line.kind, '--json']
            argv += ['--payment=%s:%s' % (p['date'], p['amount'])
                for p in data['payments']]
            if data['provisional_from']:
                argv.append('--provisional')
            with self.subTest(line=line.id):
                result = self._interest_command(argv)
                self.assertEqual(D(result['interest']), line.amount)
                self.assertEqual(result['capitalisations'],
                    data['capitalisations'])
                self.assertEqual(result['interest_due'], data['interest_due'])

    def _interest_command(self, argv):
        import contextlib
        import io
        from .. import cli
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(cli.main(argv), 0)
        return json.loads(out.getvalue())

    @with_transaction()
    def test_consumer_invoices_join_until_the_14_day_letter(self):
        "Later invoices of a consumer go into a new case, with own letter"
        pool = Pool()
        Case = pool.get('payt.case')
        Item = pool.get('payt.item')
        administration = self._setup(items=[
                item('c-1', 'C1', TODAY - days(40), '2500.00'),
                item('c-2', 'C1', TODAY - days(45), '2500.00'),
                item('c-4', 'C1', TODAY - days(10), '400.00'),
                ])
        run(administration, TODAY)
        first, = Case.search([])
        self.assertEqual(len(first.items), 2)
        self.assertTrue(first.letters[0].fourteen_day)
        # c-4 reaches collection after the 14-day letter went out: its own
        # case and its own 14-day letter; the first letter's principal and
        # costs stay as stated (art. 6:96 lid 6 and 7 BW).
        run(administration, TODAY + days(30))
        second, = Case.search([('id', '!=', first.id)])
        self.assertEqual([i.external_id for i in second.items], ['c-4'])
        self.assertEqual(second.principal, Decimal('400.00'))
        letter, = second.letters
        self.assertTrue(letter.fourteen_day)
        self.assertEqual(letter.costs_stated, Decimal('60.00'))
        self.assertEqual(fresh(first).principal, Decimal('5000.00'))
        # Before its letter, a case takes in the debtor's invoices: by
        # hand, two hand-overs of C2 end in one case over both.
        Administration = pool.get('payt.administration')
        Administration.import_batch(administration.id, {'items': [
                    item('c-5', 'C2', TODAY - days(5), '100.00'),
                    item('c-6', 'C2', TODAY - days(3), '50.00')]})
        c5, = Item.search([('external_id', '=', 'c-5')])
        c6, = Item.search([('external_id', '=', 'c-6')])
        case, = Case.open_for_items([c5], TODAY)
        same, = Case.open_for_items([c6], TODAY)
        self.assertEqual(same, case)
        self.assertEqual(fresh(case).principal, Decimal('150.00'))

    @with_transaction()
    def test_business_invoices_join_until_letter_or_costs(self):
        "A business case takes in invoices until its costs or first letter"
        pool = Pool()
        Case = pool.get('payt.case')
        administration = self._setup(items=[
                item('b-1', 'B1', TODAY - days(40), '1500.00'),
                item('b-3', 'B1', TODAY - days(10), '500.00'),
                ])
        run(administration, TODAY)
        first, = Case.search([])
        self.assertTrue(first.costs)
        run(administration, TODAY + days(30))
        second, = Case.search([('id', '!=', first.id)])
        self.assertEqual([i.external_id for i in second.items], ['b-3'])
        # Its own costs over its own principal: 15% of 500 = 75.00.
        self.assertEqual(second.costs[0].total, Decimal('75.00'))
        self.assertEqual(fresh(first).principal, Decimal('1500.00'))
