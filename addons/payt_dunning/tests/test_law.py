# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Tests of the Dutch collection-law engine (no database needed)."""
import datetime as dt
import json
import tempfile
import unittest
from decimal import ROUND_HALF_UP, Decimal as D
from pathlib import Path

from hypothesis import given, settings, strategies as st

from trytond.modules.payt_dunning import law

CENT = D('0.01')
cents = st.integers(min_value=1, max_value=2_000_000_00).map(
    lambda c: D(c).scaleb(-2))
amounts = st.integers(min_value=0, max_value=100_000_00).map(
    lambda c: D(c).scaleb(-2))


def reference_staffel(principal):
    """Independent formulation: the cumulative BIK amount is a piecewise
    linear function through the bracket tops (principal, cumulative cost),
    flat at 6,775 from 1,000,000 and never below 40."""
    points = [(D(0), D(0)), (D(2500), D(375)), (D(5000), D(625)),
        (D(10000), D(875)), (D(200000), D(2775)), (D(1000000), D(6775))]
    value = D(6775)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if principal <= x1:
            value = y0 + (principal - x0) * (y1 - y0) / (x1 - x0)
            break
    return max(value, D(40)).quantize(CENT, rounding=ROUND_HALF_UP)


class CollectionCostsTest(unittest.TestCase):

    def test_boundaries_by_hand(self):
        cases = {
            # 15% of 266.67 = 40.0005 -> 40.00 (the minimum is just reached)
            '266.67': '40.00',
            '100': '40.00',             # 15.00 -> minimum 40
            '2500': '375.00',           # 15% x 2,500
            '5000': '625.00',           # 375 + 10% x 2,500
            '10000': '875.00',          # 625 + 5% x 5,000
            '200000': '2775.00',        # 875 + 1% x 190,000
            '1000000': '6775.00',       # 2,775 + 0.5% x 800,000
            '5000000': '6775.00',       # capped at the maximum
            '1234.56': '185.18',        # 15% x 1,234.56 = 185.184
            }
        for principal, costs in cases.items():
            with self.subTest(principal=principal):
                result = law.collection_costs(D(principal))
                self.assertEqual(result.costs, D(costs))
                self.assertEqual(result.total, D(costs))

    def test_breakdown_traces_each_bracket(self):
        result = law.collection_costs(D('7500'))
        rows = [(b.lower, b.upper, b.rate, b.base, b.amount)
            for b in result.brackets if b.base]
        self.assertEqual(rows, [
                (D(0), D(2500), D(15), D(2500), D(375)),
                (D(2500), D(5000), D(10), D(2500), D(250)),
                (D(5000), D(10000), D(5), D(2500), D(125)),
                ])
        self.assertIn('6:96', result.rule)
        self.assertIn('Besluit BIK', result.rule)

    def test_minimum_and_maximum_flags(self):
        self.assertTrue(law.collection_costs(D('10')).minimum_applied)
        self.assertTrue(law.collection_costs(D('2000000')).maximum_applied)
        middle = law.collection_costs(D('3000'))
        self.assertFalse(middle.minimum_applied or middle.maximum_applied)

    @given(cents)
    def test_matches_independent_formulation(self, principal):
        self.assertEqual(
            law.collection_costs(principal).costs,
            reference_staffel(principal))

    @given(cents, cents)
    def test_monotonic_and_bounded(self, a, b):
        low, high = sorted((a, b))
        cost_low = law.collection_costs(low).costs
        cost_high = law.collection_costs(high).costs
        self.assertLessEqual(cost_low, cost_high)
        for cost in (cost_low, cost_high):
            self.assertGreaterEqual(cost, D(40))
            self.assertLessEqual(cost, D(6775))

    def test_vat_surcharge_includes_minimum(self):
        # 40.00 minimum x 1.21 = 48.40
        result = law.collection_costs(
            D('100'), vat_rate=D('21'), vat_conditions=True)
        self.assertEqual(
            (result.costs, result.vat_amount, result.total),
            (D('40.00'), D('8.40'), D('48.40')))
        # 875.00 x 1.21 = 1,058.75, conditions given as a triple
        result = law.collection_costs(
            D('10000'), vat_rate=D('21'),
            vat_conditions=(True, True, True))
        self.assertEqual(result.total, D('1058.75'))
        self.assertIn('art. 2 lid 3', result.rule)
        # The maximum is capped before VAT: 6,775 x 1.21 = 8,197.75
        result = law.collection_costs(
            D('3000000'), vat_rate=D('21'), vat_conditions=True)
        self.assertEqual(result.total, D('8197.75'))

    def test_vat_refused_unless_all_conditions_hold(self):
        for conditions in (None, False, (True, True, False),
                (False, True, True), (True, False, True)):
            with self.subTest(conditions=conditions):
                with self.assertRaisesRegex(ValueError, 'VAT surcharge'):
                    law.collection_costs(D('1000'), vat_rate=D('21'),
                        vat_conditions=conditions)
        with self.assertRaisesRegex(ValueError, 'stated_explicitly'):
            law.collection_costs(D('1000'), vat_rate=D('21'),
                vat_conditions=law.VatConditions(True, True, False))

    def test_agreed_amount(self):
        result = law.collection_costs(
            D('1000'), 'business', agreed_amount=D('250'))
        self.assertEqual(result.total, D('250.00'))
        self.assertEqual(result.brackets, ())
        with self.assertRaisesRegex(ValueError, 'agreed_amount.*consumer'):
            law.collection_costs(D('1000'), 'consumer', agreed_amount=D('250'))

    def test_business_staffel_same_as_consumer(self):
        self.assertEqual(
            law.collection_costs(D('100'), 'business').costs, D('40.00'))
        self.assertIn('lid 4',
            law.collection_costs(D('100'), 'business').rule)

    def test_default_before_wik_refused(self):
        with self.assertRaisesRegex(ValueError, 'default_date.*2012-07-01'):
            law.collection_costs(D('1000'), default_date=dt.date(2012, 6, 30))
        result = law.collection_costs(
            D('1000'), default_date=dt.date(2012, 7, 1))
        self.assertEqual(result.costs, D('150.00'))

    def test_combined_principal_before_staffel(self):
        # Two invoices of 2,500 reminded together: costs on 5,000 = 625.00,
        # not 2 x 375.00 = 750.00.
        total = law.combined_principal([D('2500'), D('2500')])
        self.assertEqual(total, D('5000'))
        self.assertEqual(law.collection_costs(total).costs, D('625.00'))
        with self.assertRaisesRegex(ValueError, r'principals\[1\]'):
            law.combined_principal([D('1'), D('-1')])

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, 'principal'):
            law.collection_costs(D('-1'))
        with self.assertRaisesRegex(ValueError, 'principal.*float'):
            law.collection_costs(1000.0)
        with self.assertRaisesRegex(ValueError, 'principal.*cents'):
            law.collection_costs(D('10.001'))
        with self.assertRaisesRegex(ValueError, 'debtor_kind'):
            law.collection_costs(D('10'), 'company')
        with self.assertRaisesRegex(ValueError, 'vat_rate.*float'):
            law.collection_costs(D('10'), vat_rate=21.0, vat_conditions=True)

    def test_to_dict_is_json(self):
        data = json.loads(json.dumps(law.collection_costs(D('3000')).to_dict()))
        self.assertEqual(data['costs'], '425.00')
        # 10% of the 500.00 above 2,500
        self.assertEqual(data['brackets'][1]['amount'], '50.00')


DOC_RATES = [
    # (from, consumer, commercial) exactly as in NL-COLLECTION-LAW.md
    ('2015-01-01', '2', '8.05'),
    ('2016-07-01', '2', '8.00'),
    ('2022-06-30', '2', '8'),       # "(unchanged to) 2022-06-30"
    ('2023-01-01', '4', '10.5'),
    ('2023-07-01', '6', '12'),
    ('2024-01-01', '7', '12.5'),
    ('2024-07-01', '7', '12.25'),
    ('2025-01-01', '6', '11.15'),
    ('2025-07-01', '6', '10.15'),
    ('2026-01-01', '4', '10.15'),
    ]


class RateTableTest(unittest.TestCase):

    def test_every_row_of_the_doc(self):
        table = law.load_rates()
        starts = {row.start_date for row in table}
        for day, consumer, commercial in DOC_RATES:
            day = dt.date.fromisoformat(day)
            with self.subTest(day=day):
                row = law._rate_row(table, day)
                self.assertEqual(row.consumer_rate, D(consumer))
                self.assertEqual(row.commercial_rate, D(commercial))
                if day != dt.date(2022, 6, 30):
                    self.assertIn(day, starts)

    def test_confidence_is_carried(self):
        table = {row.start_date: row for row in law.load_rates()}
        self.assertEqual(table[dt.date(2016, 7, 1)].confidence, 'sourced')
        # The consumer rate of 6 % from 2025-07-01 has one unofficial
        # source; the decree's method (ECB 2.40 % on 30-04-2025 + 2.25 =
        # 4.65, rounded to whole percents) gives 5 %.
        self.assertEqual(table[dt.date(2025, 7, 1)].confidence, 'disputed')
        self.assertIn('5 %', table[dt.date(2025, 7, 1)].source_note)
        self.assertEqual(table[dt.date(2026, 1, 1)].confidence, 'unverified')
        self.assertIn('12 %', table[dt.date(2024, 1, 1)].source_note)

    def test_every_row_names_its_source(self):
        "Consumer: the decree (Stb./BWBR); commercial: the ECB rate + 8"
        for row in law.load_rates():
            with self.subTest(row=row.start_date):
                self.assertRegex(row.source_note,
                    r'Stb\.|BWBR|Besluit|AMvB|decree')
                self.assertIn('ECB', row.source_note)

    def test_commercial_rate_is_ecb_plus_eight(self):
        "Art. 6:120 lid 2 BW: the ECB main refinancing rate + 8 points"
        # ECB main refinancing rate in force on each reset day.
        ecb = {'2015-01-01': '0.05', '2016-07-01': '0.00',
            '2022-01-01': '0.00', '2022-07-01': '0.00',
            '2023-01-01': '2.50', '2023-07-01': '4.00',
            '2024-01-01': '4.50', '2024-07-01': '4.25',
            '2025-01-01': '3.15', '2025-07-01': '2.15',
            '2026-01-01': '2.15'}
        table = {r.start_date.isoformat(): r for r in law.load_rates()}
        self.assertEqual(set(table), set(ecb))
        for day, rate in ecb.items():
            self.assertEqual(table[day].commercial_rate, D(rate) + 8, day)

    def test_unpublished_half_year_is_not_guessed(self):
        "No row for 2026-07-01: the table is known up to 2026-06-30"
        table = law.load_rates()
        self.assertEqual(table[-1].start_date, dt.date(2026, 1, 1))
        self.assertEqual(law.known_until(table), dt.date(2026, 7, 1))

    def test_administrator_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, 'rates.csv')
            path.write_text(
                'start_date,consumer_rate,commercial_rate,confidence,'
                'source_note\n2020-01-01,3,9,sourced,test\n')
            (row,) = law.load_rates(path)
            self.assertEqual(row.consumer_rate, D(3))
            path.write_text(
                'start_date,consumer_rate,commercial_rate,confidence,'
                'source_note\n2020-01-01,abc,9,sourced,x\n')
            with self.assertRaisesRegex(ValueError, 'line 2'):
                law.load_rates(path)


class StatutoryInterestTest(unittest.TestCase):

    def test_across_rate_change(self):
        # Consumer, 1,000 from 2023-06-01 up to 2023-08-01:
        #   June: 1000 x 4% x 30/365 = 3.287671...
        #   July: 1000 x 6% x 31/365 = 5.095890...
        #   total 8.383561 -> 8.38
        result = law.statutory_interest(
            D('1000'), dt.date(2023, 6, 1), dt.date(2023, 8, 1))
        self.assertEqual(result.interest, D('8.38'))
        self.assertEqual([(p.days, p.rate) for p in result.periods],
            [(30, D(4)), (31, D(6))])
        self.assertEqual(result.total, D('1008.38'))

    def test_across_leap_year(self):
        # Commercial, 10,000 from 2023-12-01 up to 2024-03-01:
        #   Dec 2023: 10000 x 12%   x 31/365 = 101.917808...
        #   2024:     10000 x 12.5% x 60/366 = 204.918032...
        #   total 306.835841 -> 306.84
        result = law.statutory_interest(D('10000'), dt.date(2023, 12, 1),
            dt.date(2024, 3, 1), 'commercial')
        self.assertEqual(result.interest, D('306.84'))
        self.assertEqual([p.year_length for p in result.periods], [365, 366])

    def test_full_leap_year_is_exactly_the_rate(self):
        # 2024 is one year of 366 days at 7% consumer: 1000 x 7% = 70.00,
        # capitalised on the anniversary 2025-01-01.
        result = law.statutory_interest(
            D('1000'), dt.date(2024, 1, 1), dt.date(2025, 1, 1))
        self.assertEqual(result.interest, D('70.00'))
        self.assertEqual(result.capitalisations[0].amount, D('70.00'))

    def test_yearly_capitalisation(self):
        # Consumer, 1,000 from 2023-01-01 up to 2025-01-01:
        #   year 1: 1000 x 4% x 181/365 + 1000 x 6% x 184/365
        #           = 19.835616 + 30.246575 = 50.082191 -> 50.08 added
        #   year 2: 1050.08 x 7% (366/366) = 73.5056 -> 73.51
        #   total 123.59 (simple interest would be 120.08)
        result = law.statutory_interest(
            D('1000'), dt.date(2023, 1, 1), dt.date(2025, 1, 1))
        self.assertEqual(
            [(c.date, c.amount, c.new_base) for c in result.capitalisations],
            [(dt.date(2024, 1, 1), D('50.08'), D('1050.08')),
                (dt.date(2025, 1, 1), D('73.51'), D('1123.59'))])
        self.assertEqual(result.interest, D('123.59'))

    def test_capitalisation_mid_year_start(self):
        # Commercial, 10,000 from 2024-01-01 up to 2025-02-01:
        #   2024 H1: 10000 x 12.5%  x 182/366 = 621.584699
        #   2024 H2: 10000 x 12.25% x 184/366 = 615.846994
        #   -> 1,237.43 capitalised on 2025-01-01
        #   Jan 2025: 11237.43 x 11.15% x 31/365 = 106.416922 -> 106.42
        #   total 1,343.85
        result = law.statutory_interest(D('10000'), dt.date(2024, 1, 1),
            dt.date(2025, 2, 1), 'commercial')
        self.assertEqual(result.interest, D('1343.85'))
        self.assertEqual(result.periods[-1].base, D('11237.43'))

    def test_anniversary_not_calendar_year(self):
        # Default from 2023-07-01: capitalised on 2024-07-01, not 2024-01-01.
        result = law.statutory_interest(
            D('1000'), dt.date(2023, 7, 1), dt.date(2024, 9, 1))
        self.assertEqual([c.date for c in result.capitalisations],
            [dt.date(2024, 7, 1)])
        # 1000 x 6% x 184/365 + 1000 x 7% x 182/366 = 30.246575 + 34.808743
        self.assertEqual(result.capitalisations[0].amount, D('65.06'))

    def test_low_confidence_rate_warns(self):
        result = law.statutory_interest(
            D('1000'), dt.date(2025, 8, 1), dt.date(2025, 9, 1))
        self.assertTrue(any('disputed' in w for w in result.warnings))

    def test_custom_rates(self):
        rates = [(dt.date(2020, 1, 1), D('10'), D('20')),
            (dt.date(2021, 7, 1), D('10'), D('20'))]
        # 365 days of 2021 at 10%: 100.00
        result = law.statutory_interest(D('1000'), dt.date(2021, 1, 1),
            dt.date(2022, 1, 1), rates=rates)
        self.assertEqual(result.interest, D('100.00'))

    @given(amounts, st.dates(dt.date(2015, 1, 1), dt.date(2026, 6, 30)),
        st.integers(0, 1500), st.integers(0, 400),
        st.sampled_from(['consumer', 'commercial']))
    @settings(max_examples=60, deadline=None)
    def test_grows_with_time(self, principal, start, days, more, kind):
        limit = law.known_until(law.load_rates())
        end = min(start + dt.timedelta(days=days), limit)
        shorter = law.statutory_interest(principal, start, end, kind)
        longer = law.statutory_interest(principal, start,
            min(end + dt.timedelta(days=more), limit), kind)
        self.assertGreaterEqual(shorter.interest, 0)
        self.assertLessEqual(shorter.interest, longer.interest)
        self.assertEqual(sum(p.days for p in shorter.periods),
            (end - start).days)

    def test_zero_length_period(self):
        day = dt.date(2024, 5, 1)
        self.assertEqual(
            law.statutory_interest(D('10'), day, day).interest, D('0'))

    def test_bad_input(self):
        start, end = dt.date(2024, 1, 1), dt.date(2024, 2, 1)
        with self.assertRaisesRegex(ValueError, 'end'):
            law.statutory_interest(D('10'), end, start)
        with self.assertRaisesRegex(ValueError, 'principal'):
            law.statutory_interest(D('-10'), start, end)
        with self.assertRaisesRegex(ValueError, 'principal.*float'):
            law.statutory_interest(10.0, start, end)
        with self.assertRaisesRegex(ValueError, 'start'):
            law.statutory_interest(D('10'), dt.date(2014, 1, 1), end)
        with self.assertRaisesRegex(ValueError, 'kind'):
            law.statutory_interest(D('10'), start, end, 'business')
        with self.assertRaisesRegex(ValueError, 'rates'):
            law.statutory_interest(D('10'), start, end,
                rates=[(start, 2.0, D('8'))])


class InterestAfterPaymentsTest(unittest.TestCase):
    "Payments on a claim in default (art. 6:44, 6:119 lid 2, 6:119a lid 3)"

    def test_paid_interest_is_not_capitalised(self):
        # Issue 11: business, 10,000 in default from 2025-01-01, 183.29 of
        # interest paid on 2025-05-01, computed up to 2026-03-01.
        #   2025-01-01..04-30: 10000 x 11.15% x 120/365 =  366.575342
        #   2025-05-01..06-30: 10000 x 11.15% x  61/365 =  186.342466
        #   2025-07-01..12-31: 10000 x 10.15% x 184/365 =  511.671233
        #   year 1 = 1,064.589041 -> 1,064.59; paid 183.29 of it, so
        #   1,064.59 - 183.29 = 881.30 is capitalised on 2026-01-01
        #   2026-01-01..02-28: 10881.30 x 10.15% x 59/365 = 178.527766
        #   interest 1,064.59 + 178.53 = 1,243.12; still due 1,059.83
        # (capitalising the whole year gave 11064.59 x ... = 181.54 and
        # 1,246.13 / 1,062.84).
        result = law.statutory_interest(D('10000'), dt.date(2025, 1, 1),
            dt.date(2026, 3, 1), 'commercial',
            payments=[(dt.date(2025, 5, 1), D('183.29'))])
        cap, = result.capitalisations
        self.assertEqual((cap.date, cap.year_interest, cap.paid, cap.amount,
                cap.new_base), (dt.date(2026, 1, 1), D('1064.59'),
                D('183.29'), D('881.30'), D('10881.30')))
        self.assertEqual(result.interest, D('1243.12'))
        self.assertEqual(result.interest_paid, D('183.29'))
        self.assertEqual(result.interest_due, D('1059.83'))
        self.assertEqual(result.principal_due, D('10000.00'))
        self.assertEqual(result.total, D('11059.83'))

    def test_principal_payment_keeps_the_year_of_default(self):
        # Issue 11: the same case; on 2025-05-01 the debtor pays the
        # 366.58 of interest then due and 1,000 of principal (1,366.58).
        #   2025-01-01..04-30: 10000 x 11.15% x 120/365 = 366.575342
        #   2025-05-01..06-30:  9000 x 11.15% x  61/365 = 167.708219
        #   2025-07-01..12-31:  9000 x 10.15% x 184/365 = 460.504110
        #   year 1 (from the default, not from the payment) = 994.787671
        #   -> 994.79, of which 366.58 paid: 628.21 capitalised 2026-01-01
        #   2026-01-01..02-28:  9628.21 x 10.15% x 59/365 = 157.968621
        #   interest 994.79 + 157.97 = 1,152.76 (a year restarted on the
        #   payment day gives 366.58 + 775.87 = 1,142.45)
        result = law.statutory_interest(D('10000'), dt.date(2025, 1, 1),
            dt.date(2026, 3, 1), 'commercial',
            payments=[(dt.date(2025, 5, 1), D('1366.58'))])
        paid, = result.payments
        self.assertEqual((paid.to_interest, paid.to_principal),
            (D('366.58'), D('1000.00')))
        cap, = result.capitalisations
        self.assertEqual((cap.date, cap.year_interest, cap.amount),
            (dt.date(2026, 1, 1), D('994.79'), D('628.21')))
        self.assertEqual(result.interest, D('1152.76'))
        self.assertEqual(result.interest_due, D('786.18'))
        self.assertEqual(result.principal_due, D('9000.00'))

    def test_payment_of_capitalised_interest_lowers_the_base(self):
        # Consumer, 1,000 from 2023-01-01: 50.08 capitalised on 2024-01-01
        # (test_yearly_capitalisation).  30.00 paid on 2024-01-01 goes to
        # that interest (6:44), so 2024 runs on 1,020.08:
        #   1020.08 x 7% x 366/366 = 71.4056 -> 71.41; total 121.49
        result = law.statutory_interest(D('1000'), dt.date(2023, 1, 1),
            dt.date(2025, 1, 1), payments=[(dt.date(2024, 1, 1), D('30'))])
        self.assertEqual([c.new_base for c in result.capitalisations],
            [D('1050.08'), D('1091.49')])
        self.assertEqual(result.periods[-1].base, D('1020.08'))
        self.assertEqual(result.interest, D('121.49'))
        self.assertEqual(result.interest_due, D('91.49'))

    def test_full_payment_stops_interest(self):
        # 1,000 consumer from 2024-01-01; on 2024-02-01 the debtor pays
        # 1000 x 7% x 31/366 = 5.93 + 1,000 = 1,005.93 and 4.07 too much.
        result = law.statutory_interest(D('1000'), dt.date(2024, 1, 1),
            dt.date(2024, 12, 1), payments=[('2024-02-01', '1010.00')])
        self.assertEqual(result.interest, D('5.93'))
        self.assertEqual(result.payments[0].overpayment, D('4.07'))
        self.assertEqual(result.total, D('0.00'))

    def test_payment_after_the_end_refused(self):
        with self.assertRaisesRegex(ValueError, 'after the end'):
            law.statutory_interest(D('1000'), dt.date(2024, 1, 1),
                dt.date(2024, 2, 1), payments=[('2024-03-01', '10')])

    @given(st.integers(1, 100_000_00).map(lambda c: D(c).scaleb(-2)),
        st.integers(1, 364), st.integers(0, 100))
    @settings(max_examples=60, deadline=None)
    def test_general_rule(self, principal, day, percent):
        """Whatever is paid, the year runs from the default; paying
        interest takes exactly that amount out of the capitalisation and
        leaves the year's interest as it was."""
        start, end = dt.date(2023, 1, 1), dt.date(2025, 6, 1)
        paid_on = start + dt.timedelta(days=day)
        unpaid = law.statutory_interest(principal, start, end)
        owed = law.statutory_interest(principal, start, paid_on).interest
        amount = (owed * percent / 100).quantize(CENT)
        if not amount:
            return
        paid = law.statutory_interest(principal, start, end,
            payments=[(paid_on, amount)])
        self.assertEqual([c.date for c in paid.capitalisations],
            [c.date for c in unpaid.capitalisations])
        first, before = paid.capitalisations[0], unpaid.capitalisations[0]
        self.assertEqual(first.year_interest, before.amount)
        self.assertEqual(first.amount, before.amount - amount)
        self.assertEqual(paid.interest_paid, amount)
        self.assertLessEqual(paid.interest, unpaid.interest)


class HostileInputTest(unittest.TestCase):
    "`payt costs` / `payt interest` refuse nonsense with a message"

    def _cli(self, *argv):
        import contextlib
        import io
        from .. import cli
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(argv))
            except SystemExit as exit:
                code = exit.code
        return code, out.getvalue(), err.getvalue()

    def test_huge_principal(self):
        for principal in ['1e400', '1e26', '100000000000000']:
            with self.subTest(principal=principal):
                code, out, err = self._cli('costs', '--principal', principal)
                self.assertEqual(code, 2)
                self.assertIn('principal is too large', err)
                self.assertNotIn('Traceback', err)
        code, out, _ = self._cli('costs', '--principal', '99999999999999.99')
        self.assertEqual(code, 0)
        self.assertIn('6,775.00', out)
        code, _, err = self._cli('costs', '--principal', '1000',
            '--vat-surcharge', '1e400', '--vat-conditions-met')
        self.assertEqual((code, 'vat_rate' in err), (2, True))

    def test_interest_beyond_the_last_published_rate(self):
        code, out, err = self._cli('interest', '--principal', '1000',
            '--from', '2025-01-01', '--to', '2099-01-01', '--kind',
            'consumer')
        self.assertEqual(code, 2)
        self.assertIn('no published statutory rate from 2026-07-01', err)
        code, _, err = self._cli('interest', '--principal', '1000',
            '--from', '2025-01-01', '--to', '2099', '--kind', 'consumer')
        self.assertEqual(code, 2)
        self.assertIn('not a date', err)
        # Up to the last day of the known half year is fine; asked for
        # explicitly, a projection carries the warning.
        code, out, _ = self._cli('interest', '--principal', '1000',
            '--from', '2025-01-01', '--to', '2026-07-01', '--kind',
            'consumer')
        self.assertEqual(code, 0)
        code, out, _ = self._cli('interest', '--principal', '1000',
            '--from', '2025-01-01', '--to', '2026-08-01', '--kind',
            'consumer', '--provisional', '--json')
        data = json.loads(out)
        self.assertEqual(data['provisional_from'], '2026-07-01')
        self.assertEqual(data['periods'][-1]['confidence'], 'provisional')
        # Not for ever: centuries of compounding would only overflow.
        code, _, err = self._cli('interest', '--principal', '1000',
            '--from', '2025-01-01', '--to', '9999-12-31', '--kind',
            'commercial', '--provisional')
        self.assertEqual(code, 2)
        self.assertIn('more than 2 years after', err)

    def test_help_says_to_is_not_counted(self):
        code, out, _ = self._cli('interest', '--help')
        self.assertEqual(code, 0)
        self.assertIn('day of payment', out)
        self.assertIn('not counted', ' '.join(out.split()))

    def test_payment_option(self):
        # The first vector through the command line: 1,059.83 still due.
        code, out, _ = self._cli('interest', '--principal', '10000',
            '--from', '2025-01-01', '--to', '2026-03-01', '--kind',
            'commercial', '--payment', '2025-05-01:183.29')
        self.assertEqual(code, 0)
        self.assertIn('Interest due: 1,059.83', out)
        self.assertIn('Capitalised on 2026-01-01: 881.30', out)


class AllocationTest(unittest.TestCase):

    def test_costs_then_interest_then_principal(self):
        result = law.allocate_payment(D('500'), D('100'), D('50'), D('1000'))
        self.assertEqual(
            (result.to_costs, result.to_interest, result.to_principal,
                result.overpayment, result.remaining_principal),
            (D('100'), D('50'), D('350'), D('0'), D('650')))

    def test_small_payment_only_reduces_costs(self):
        result = law.allocate_payment(D('80'), D('100'), D('50'), D('1000'))
        self.assertEqual((result.to_costs, result.to_interest,
                result.to_principal, result.remaining_costs),
            (D('80'), D('0'), D('0'), D('20')))

    def test_overpayment(self):
        result = law.allocate_payment(D('1300'), D('100'), D('50'), D('1000'))
        self.assertEqual(result.overpayment, D('150'))
        self.assertIn('6:44', result.rule)

    @given(amounts, amounts, amounts, amounts)
    def test_parts_add_up(self, amount, costs, interest, principal):
        r = law.allocate_payment(amount, costs, interest, principal)
        self.assertEqual(
            r.to_costs + r.to_interest + r.to_principal + r.overpayment,
            amount)
        # A later debt is only touched once the earlier ones are paid off.
        if r.to_interest:
            self.assertEqual(r.remaining_costs, 0)
        if r.to_principal:
            self.assertEqual(r.remaining_interest, 0)

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, 'amount'):
            law.allocate_payment(D('-1'), D('1'), D('1'), D('1'))
        with self.assertRaisesRegex(ValueError, 'interest.*float'):
            law.allocate_payment(D('1'), D('1'), 1.5, D('1'))


class FourteenDayTermTest(unittest.TestCase):

    def dates(self, result):
        return (result.receipt_date, result.term_start, result.term_end,
            result.costs_chargeable_from)

    def test_email_same_day(self):
        # Monday 2025-03-03: received that day, days 1..14 are 4..17 March.
        result = law.fourteen_day_term(dt.date(2025, 3, 3), 'email')
        self.assertEqual(self.dates(result), (dt.date(2025, 3, 3),
                dt.date(2025, 3, 4), dt.date(2025, 3, 17),
                dt.date(2025, 3, 18)))
        self.assertEqual(result.wording_nl, law.TERM_WORDING_NL)

    def test_post_over_weekend(self):
        # Posted Friday 2025-03-07: Mon 10 (1), Tue 11 (2) -> received 11th;
        # term ends 25 March, costs from 26 March.
        result = law.fourteen_day_term(dt.date(2025, 3, 7), 'post')
        self.assertEqual(self.dates(result), (dt.date(2025, 3, 11),
                dt.date(2025, 3, 12), dt.date(2025, 3, 25),
                dt.date(2025, 3, 26)))

    def test_post_weekday_is_day_17(self):
        # Posted Monday 2025-03-03: received Wednesday 5th; costs from the
        # 17th day after sending, as the doc's common practice says.
        result = law.fourteen_day_term(dt.date(2025, 3, 3), 'post')
        self.assertEqual(
            (result.costs_chargeable_from - result.sent_date).days, 17)

    def test_post_over_christmas(self):
        # Posted Tue 2025-12-23: Wed 24 (1), 25/26 Christmas, 27/28
        # weekend, Mon 29 (2) -> received 29 Dec; term ends 12 Jan 2026.
        result = law.fourteen_day_term(dt.date(2025, 12, 23), 'post')
        self.assertEqual(self.dates(result), (dt.date(2025, 12, 29),
                dt.date(2025, 12, 30), dt.date(2026, 1, 12),
                dt.date(2026, 1, 13)))
        self.assertIn((dt.date(2025, 12, 25), 'Christmas Day'),
            result.skipped_days)

    def test_post_over_kings_day(self):
        # Posted Fri 2026-04-24: weekend, Mon 27 April King's Day, Tue 28
        # (1), Wed 29 (2) -> received 29 April; term ends 13 May.
        result = law.fourteen_day_term(dt.date(2026, 4, 24), 'post')
        self.assertEqual(self.dates(result), (dt.date(2026, 4, 29),
                dt.date(2026, 4, 30), dt.date(2026, 5, 13),
                dt.date(2026, 5, 14)))

    def test_term_ending_on_weekend_is_extended(self):
        # E-mailed Saturday 2025-03-08: receipt + 14 = Saturday 22 March,
        # extended to Monday 24 March (Algemene termijnenwet art. 1).
        result = law.fourteen_day_term(dt.date(2025, 3, 8), 'email')
        self.assertEqual(result.term_end_unextended, dt.date(2025, 3, 22))
        self.assertEqual(result.term_end, dt.date(2025, 3, 24))
        self.assertEqual(result.costs_chargeable_from, dt.date(2025, 3, 25))
        self.assertIn('termijnenwet', result.rule)
        plain = law.fourteen_day_term(dt.date(2025, 3, 8), 'email',
            extend_to_working_day=False)
        self.assertEqual(plain.costs_chargeable_from, dt.date(2025, 3, 23))

    def test_term_ending_on_christmas_is_extended(self):
        # E-mailed Thu 2025-12-11: 14 days -> 25 Dec; 26 Dec and the
        # weekend follow, so the term ends Monday 29 December.
        result = law.fourteen_day_term(dt.date(2025, 12, 11), 'email')
        self.assertEqual(result.term_end, dt.date(2025, 12, 29))

    def test_liberation_day_every_year(self):
        # 5 May 2026 is no lustrum year, yet the Atw names it: posted
        # Mon 2026-05-04 with one delivery day -> received Wed 6 May.
        result = law.fourteen_day_term(dt.date(2026, 5, 4), 'post', 1)
        self.assertEqual(result.receipt_date, dt.date(2026, 5, 6))

    @given(st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)),
        st.integers(0, 5))
    @settings(max_examples=100)
    def test_never_earlier_than_statute(self, sent, delivery):
        result = law.fourteen_day_term(sent, 'post', delivery)
        self.assertGreaterEqual(
            (result.costs_chargeable_from - result.sent_date).days,
            15 + delivery)
        self.assertIsNone(law._closed_reason(result.term_end))

    def test_bad_input(self):
        with self.assertRaisesRegex(ValueError, 'channel'):
            law.fourteen_day_term(dt.date(2025, 1, 6), 'fax')
        with self.assertRaisesRegex(ValueError, 'sent_date'):
            law.fourteen_day_term(dt.datetime(2025, 1, 6, 9), 'post')
        with self.assertRaisesRegex(ValueError, 'post_delivery_days'):
            law.fourteen_day_term(dt.date(2025, 1, 6), 'post', -1)


class ReportTest(unittest.TestCase):

    def test_costs_text(self):
        text = law.costs_report(D('10000'), 'consumer', None, False)
        self.assertIn('875.00', text)
        self.assertIn('6:96', text)

    def test_costs_json(self):
        data = json.loads(law.costs_report('10000', 'consumer', None, True))
        self.assertEqual(data['total'], '875.00')

    def test_interest_text_and_json(self):
        text = law.interest_report('1000', '2023-06-01', '2023-08-01',
            'consumer', False)
        self.assertIn('Interest: 8.38', text)
        data = json.loads(law.interest_report(
                '1000', '2023-06-01', '2023-08-01', 'consumer', True))
        self.assertEqual(data['interest'], '8.38')
        self.assertEqual(len(data['periods']), 2)


if __name__ == '__main__':
    unittest.main()
