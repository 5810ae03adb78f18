# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Pure computation engine for Dutch collection law (debiteurenbeheer).

Every rule and figure comes from NL-COLLECTION-LAW.md (see docs/LAW.md).
This module deliberately imports nothing from trytond so the CLI and the
Tryton models share one implementation.  Money is Decimal only; each
published figure is rounded to cents (ROUND_HALF_UP) once, at its end.
"""
import csv
import dataclasses
import datetime as dt
import functools
import json
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import holidays

__all__ = [
    'CostBracket', 'CostResult', 'VatConditions', 'collection_costs',
    'combined_principal', 'RateRow', 'InterestPeriod', 'Capitalisation',
    'PaymentApplied', 'InterestResult', 'load_rates', 'known_until', 'statutory_interest', 'Allocation',
    'allocate_payment', 'TermResult', 'fourteen_day_term', 'costs_report',
    'interest_report', 'TERM_WORDING_NL', 'TERM_WORDING_EN',
    ]

CURRENCY = 'EUR'
CURRENCY_DIGITS = {'EUR': 2}
RATES_CSV = Path(__file__).resolve().parent / 'data' / 'interest_rates.csv'

_HUNDRED = Decimal(100)
# The largest amount a Numeric(16, 2) field stores; larger input is refused.
MAX_MONEY = Decimal('99999999999999.99')
MAX_RATE = _HUNDRED     # percent


# ---------------------------------------------------------------- helpers

def _round(amount, currency=CURRENCY):
    exponent = Decimal(1).scaleb(-CURRENCY_DIGITS[currency])
    return amount.quantize(exponent, rounding=ROUND_HALF_UP)


def _decimal(value, name):
    """Return value as a finite Decimal; floats are refused because they
    cannot represent cents exactly."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError(
            f'{name} must be a Decimal, int or numeric string, not '
            f'{type(value).__name__} ({value!r}): floats cannot hold '
            f'cents exactly')
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except ArithmeticError:
            raise ValueError(f'{name} is not a number: {value!r}') from None
    elif isinstance(value, int):
        value = Decimal(value)
    elif not isinstance(value, Decimal):
        raise ValueError(
            f'{name} must be a Decimal, got {type(value).__name__}')
    if not value.is_finite():
        raise ValueError(f'{name} must be finite, got {value}')
    return value


def _money(value, name, positive=False):
    value = _decimal(value, name)
    if abs(value) > MAX_MONEY:
        # Beyond what a Numeric(16, 2) field holds; from about 1e26 the
        # rounding to cents would not even fit Decimal's precision.
        raise ValueError(f'{name} is too large: at most {MAX_MONEY:,}, '
            f'got {value:.6E}')
    if value < 0 or (positive and value == 0):
        kind = 'positive' if positive else 'zero or positive'
        raise ValueError(f'{name} must be {kind}, got {value}')
    if value != _round(value):
        raise ValueError(f'{name} must be in whole cents, got {value}')
    return _round(value)


def _rate(value, name):
    value = _decimal(value, name)
    if value < 0:
        raise ValueError(f'{name} must not be negative, got {value}')
    if value > MAX_RATE:
        raise ValueError(f'{name} must be a percentage of at most '
            f'{MAX_RATE}, got {value:.6E}')
    return value


def _date(value, name):
    """Accept a date (not a datetime: a time of day has no legal meaning
    here and would silently shift day counts) or an ISO 'YYYY-MM-DD'."""
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f'{name} must be an ISO date YYYY-MM-DD, got {value!r}'
                ) from None
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise ValueError(
            f'{name} must be a datetime.date, got {type(value).__name__}')
    return value


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


class _Result:
    "Mixin giving every result a JSON-ready dict."

    def to_dict(self):
        return _jsonable(self)


def _fmt(amount):
    return f'{amount:,.2f}'


# ------------------------------------------- extrajudicial collection costs

BIK_START = dt.date(2012, 7, 1)
BIK_MINIMUM = Decimal('40')
BIK_MAXIMUM = Decimal('6775')
# (lower, upper, rate in percent); upper None = open-ended.  Besluit BIK
# art. 2 lid 1.
BIK_BRACKETS = (
    (Decimal('0'), Decimal('2500'), Decimal('15')),
    (Decimal('2500'), Decimal('5000'), Decimal('10')),
    (Decimal('5000'), Decimal('10000'), Decimal('5')),
    (Decimal('10000'), Decimal('200000'), Decimal('1')),
    (Decimal('200000'), None, Decimal('0.5')),
    )
DEBTOR_KINDS = ('consumer', 'business')
RULE_COSTS_CONSUMER = (
    'art. 6:96 BW; Besluit BIK (Stb. 2012-141) art. 2: staffel, minimum '
    'EUR 40, maximum EUR 6,775; mandatory law for consumers')
RULE_COSTS_BUSINESS = (
    'art. 6:96 lid 4 BW; Besluit BIK (Stb. 2012-141) art. 2: '
    'staffel (minimum EUR 40 due without reminder once the payment term '
    'expires), unless the parties agreed otherwise')
RULE_COSTS_AGREED = (
    'art. 6:96 BW: business debtor, amount agreed by the parties instead '
    'of the Besluit BIK staffel')
RULE_VAT = 'Besluit BIK art. 2 lid 3: increased by the VAT rate'


@dataclasses.dataclass(frozen=True)
class VatConditions(_Result):
    """The three cumulative conditions of Besluit BIK art. 2 lid 3."""
    third_party_charges_vat: bool   # collection agency/bailiff charges VAT
    creditor_cannot_deduct_vat: bool
    stated_explicitly: bool         # consumers: in the 14-day letter

    def unmet(self):
        return tuple(f.name for f in dataclasses.fields(self)
            if getattr(self, f.name) is not True)


def _vat_conditions(value):
    """A single True means: all three conditions confirmed."""
    if value is None or value is False:
        return VatConditions(False, False, False)
    if value is True:
        return VatConditions(True, True, True)
    if isinstance(value, VatConditions):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 3:
        if not all(isinstance(v, bool) for v in value):
            raise ValueError('vat_conditions must hold three booleans')
        return VatConditions(*value)
    raise ValueError(
        'vat_conditions must be True/False, a VatConditions or a triple '
        '(third_party_charges_vat, creditor_cannot_deduct_vat, '
        'stated_explicitly)')


@dataclasses.dataclass(frozen=True)
class CostBracket(_Result):
    lower: Decimal
    upper: Decimal | None
    rate: Decimal           # percent
    base: Decimal           # part of the principal inside this bracket
    amount: Decimal         # exact, unrounded: rounding happens on the total


@dataclasses.dataclass(frozen=True)
class CostResult(_Result):
    principal: Decimal
    debtor_kind: str
    vat_rate: Decimal | None
    vat_conditions: VatConditions | None
    agreed_amount: Decimal | None
    default_date: dt.date | None
    brackets: tuple
    staffel_amount: Decimal     # exact sum of the brackets
    minimum_applied: bool
    maximum_applied: bool
    costs: Decimal              # excluding VAT, rounded
    vat_amount: Decimal
    total: Decimal
    rule: str
    currency: str = CURRENCY


def combined_principal(principals):
    """Claims reminded together count as one principal (art. 6:96 lid 7)."""
    principals = list(principals)
    if not principals:
        raise ValueError('principals must contain at least one claim')
    return sum((_money(p, f'principals[{i}]')
            for i, p in enumerate(principals)), Decimal(0))


def _staffel(principal):
    brackets = []
    for lower, upper, rate in BIK_BRACKETS:
        top = principal if upper is None else min(principal, upper)
        base = max(top - lower, Decimal(0))
        brackets.append(CostBracket(
                lower, upper, rate, base, base * rate / _HUNDRED))
    return tuple(brackets)


def _check_costs_args(debtor_kind, agreed_amount, default_date):
    if debtor_kind not in DEBTOR_KINDS:
        raise ValueError(
            f'debtor_kind must be one of {DEBTOR_KINDS}, got {debtor_kind!r}')
    if agreed_amount is not None and debtor_kind == 'consumer':
        raise ValueError(
            'agreed_amount is not allowed for a consumer debtor: the '
            'Besluit BIK staffel is mandatory law for consumers '
            '(art. 6:96 BW)')
    if default_date is not None:
        default_date = _date(default_date, 'default_date')
        if default_date < BIK_START:
            raise ValueError(
                f'default_date {default_date} is before {BIK_START}: the '
                'Besluit BIK only applies to defaults from 1 July 2012; '
                'compute these costs by hand under the old '
                'reasonableness test')
    return default_date


def _vat(vat_rate, vat_conditions, agreed_amount):
    "Return (rate or None, conditions or None) after checking the law."
    if vat_rate is None:
        return None, None
    vat_rate = _rate(vat_rate, 'vat_rate')
    if vat_rate == 0:
        return None, None
    if agreed_amount is not None:
        raise ValueError(
            'vat_rate cannot be combined with agreed_amount: the VAT '
            'increase of Besluit BIK art. 2 lid 3 applies to the staffel; '
            'put any agreed VAT into agreed_amount')
    conditions = _vat_conditions(vat_conditions)
    unmet = conditions.unmet()
    if unmet:
        raise ValueError(
            'VAT surcharge refused (Besluit BIK art. 2 lid 3): all three '
            'conditions must hold: the creditor uses a VAT-charging third '
            'party, cannot deduct that VAT, and states this explicitly; '
            f'not confirmed: {", ".join(unmet)}')
    return vat_rate, conditions


def collection_costs(principal, debtor_kind='consumer', vat_rate=None,
        agreed_amount=None, default_date=None, vat_conditions=None):
    """Extrajudicial collection costs (art. 6:96 BW, Besluit BIK).

    vat_conditions: True (all three BIK art. 2 lid 3 conditions hold), or
    a VatConditions / boolean triple; required for any vat_rate > 0.
    """
    principal = _money(principal, 'principal', positive=True)
    default_date = _check_costs_args(debtor_kind, agreed_amount, default_date)
    vat_rate, conditions = _vat(vat_rate, vat_conditions, agreed_amount)
    if agreed_amount is not None:
        agreed_amount = _money(agreed_amount, 'agreed_amount')
        brackets, exact, minimum, maximum = (), agreed_amount, False, False
        rule = RULE_COSTS_AGREED
    else:
        brackets = _staffel(principal)
        exact = sum((b.amount for b in brackets), Decimal(0))
        minimum, maximum = exact < BIK_MINIMUM, exact > BIK_MAXIMUM
        rule = (RULE_COSTS_CONSUMER if debtor_kind == 'consumer'
            else RULE_COSTS_BUSINESS)
    costs = _round(min(max(exact, BIK_MINIMUM), BIK_MAXIMUM)
        if agreed_amount is None else exact)
    # The VAT increase applies to the capped amount, minimum included;
    # costs is whole cents so costs + round(VAT) == round(costs * (1+v)).
    vat_amount = (_round(costs * vat_rate / _HUNDRED) if vat_rate
        else Decimal('0.00'))
    if vat_rate:
        rule += f'; {RULE_VAT} ({vat_rate} %)'
    return CostResult(
        principal=principal, debtor_kind=debtor_kind, vat_rate=vat_rate,
        vat_conditions=conditions, agreed_amount=agreed_amount,
        default_date=default_date, brackets=brackets, staffel_amount=exact,
        minimum_applied=minimum, maximum_applied=maximum, costs=costs,
        vat_amount=vat_amount, total=costs + vat_amount, rule=rule)


# ------------------------------------------------------ statutory interest

INTEREST_KINDS = ('consumer', 'commercial')
RULE_INTEREST = {
    'consumer': 'art. 6:119 BW (wettelijke rente); yearly capitalisation '
        'art. 6:119 lid 2 BW',
    'commercial': 'art. 6:119a BW (wettelijke handelsrente); yearly '
        'capitalisation art. 6:119a lid 3 BW',
    }
# Dutch calculators split interest per calendar year and divide the days in
# each year by that year's length.  We do the same so that a full calendar
# year yields exactly the yearly rate, also in a leap year.
DAY_COUNT = 'actual/actual per calendar year (days/365, days/366 in leap years)'


@dataclasses.dataclass(frozen=True)
class RateRow(_Result):
    start_date: dt.date
    consumer_rate: Decimal      # percent
    commercial_rate: Decimal    # percent
    confidence: str = 'given'
    source_note: str = ''

    def rate(self, kind):
        return (self.consumer_rate if kind == 'consumer'
            else self.commercial_rate)


@dataclasses.dataclass(frozen=True)
class InterestPeriod(_Result):
    start: dt.date              # first day of the period
    end: dt.date                # day after the last day (exclusive)
    days: int
    year_length: int            # 365 or 366
    rate: Decimal               # percent
    rate_start: dt.date         # table row the rate comes from
    confidence: str
    base: Decimal               # principal plus capitalised interest
    amount: Decimal             # exact, unrounded


@dataclasses.dataclass(frozen=True)
class Capitalisation(_Result):
    date: dt.date               # anniversary of the start of default
    amount: Decimal             # added to the base: the year's unpaid part
    new_base: Decimal
    year_interest: Decimal      # the year's interest, rounded
    paid: Decimal               # of which the debtor paid during the year


@dataclasses.dataclass(frozen=True)
class PaymentApplied(_Result):
    """A payment on this claim, split interest - principal (art. 6:44 BW;
    costs are the caller's: pass what is left for interest and principal)."""
    date: dt.date
    amount: Decimal
    to_interest: Decimal
    to_principal: Decimal
    overpayment: Decimal


@dataclasses.dataclass(frozen=True)
class InterestResult(_Result):
    principal: Decimal
    start: dt.date
    end: dt.date
    kind: str
    periods: tuple
    capitalisations: tuple
    interest: Decimal           # all interest accrued, rounded (paid or not)
    total: Decimal              # still due: principal_due + interest_due
    day_count: str
    rule: str
    warnings: tuple
    payments: tuple = ()
    interest_paid: Decimal = Decimal('0.00')
    interest_due: Decimal = Decimal('0.00')
    principal_paid: Decimal = Decimal('0.00')
    principal_due: Decimal = Decimal('0.00')
    provisional_from: dt.date | None = None  # rates carried forward from
    currency: str = CURRENCY


def _parse_row(row, line):
    try:
        return RateRow(
            start_date=dt.date.fromisoformat(row['start_date'].strip()),
            consumer_rate=_rate(row['consumer_rate'], 'consumer_rate'),
            commercial_rate=_rate(row['commercial_rate'], 'commercial_rate'),
            confidence=row['confidence'].strip(),
            source_note=(row.get('source_note') or '').strip())
    except (KeyError, AttributeError, ValueError) as error:
        raise ValueError(f'interest rate table line {line}: {error}') from None


def _check_table(rows):
    if not rows:
        raise ValueError('rates: the interest rate table is empty')
    dates = [r.start_date for r in rows]
    if len(set(dates)) != len(dates):
        raise ValueError('rates: duplicate start dates in the rate table')
    return tuple(sorted(rows, key=lambda r: r.start_date))


def load_rates(path=None):
    """Read the rate table (CSV) an administrator maintains."""
    path = Path(path) if path is not None else RATES_CSV
    with path.open(newline='', encoding='utf-8') as file:
        reader = csv.DictReader(file)
        rows = [_parse_row(row, line)
            for line, row in enumerate(reader, start=2)]
    return _check_table(rows)


def _normalise_rates(rates):
    rows = []
    for row in rates:
        if not isinstance(row, RateRow):
            start, consumer, commercial = row
            row = RateRow(_date(start, 'rates start date'),
                _rate(consumer, 'rates consumer rate'),
                _rate(commercial, 'rates commercial rate'))
        rows.append(row)
    return _check_table(rows)


def _rate_row(table, day):
    found = None
    for row in table:
        if row.start_date > day:
            break
        found = row
    if found is None:
        raise ValueError(
            f'start: no statutory interest rate known for {day}; the rate '
            f'table starts on {table[0].start_date}')
    return found


# How far a provisional computation may carry the last rate forward.
PROVISIONAL_YEARS = 2


def known_until(table):
    """First day without a published rate: rates are reset every 1 January
    and 1 July (art. 6:120 lid 2 BW), so the last row holds for its half
    year only."""
    last = table[-1].start_date
    return (dt.date(last.year, 7, 1) if last.month < 7
        else dt.date(last.year + 1, 1, 1))


def _anniversary(start, years):
    "Start of year `years` of default; a 29 February start runs to 1 March."
    try:
        return start.replace(year=start.year + years)
    except ValueError:
        return dt.date(start.year + years, 3, 1)


def _next_boundary(day, end, table, anniversary, events):
    "Next date where rate, year length or base may change."
    candidates = [end, anniversary, dt.date(day.year + 1, 1, 1)]
    candidates += [r.start_date for r in table if r.start_date > day]
    candidates += events
    return min(c for c in candidates if c > day)


def _period(day, stop, table, kind, base, unpublished):
    row = _rate_row(table, day)
    year_length = 366 if _is_leap(day.year) else 365
    days = (stop - day).days
    rate = row.rate(kind)
    with localcontext() as ctx:
        ctx.prec = 40   # keep the exact figure well beyond cents
        amount = base * rate / _HUNDRED * days / year_length
    confidence = 'provisional' if day >= unpublished else row.confidence
    return InterestPeriod(day, stop, days, year_length, rate,
        row.start_date, confidence, base, amount)


def _is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


class _Claim:
    """One claim in default.  The interest-bearing base is the principal
    and the capitalised interest still unpaid; `running` is the exact
    interest of the current year of default, `running_paid` what was paid
    of it.  Only the unpaid part of a year's interest is capitalised."""

    def __init__(self, principal):
        self.principal_due = principal
        self.capitalised_due = Decimal('0.00')
        self.running = Decimal(0)
        self.running_paid = Decimal('0.00')
        self.closed_years = Decimal('0.00')   # rounded interest of past years

    @property
    def base(self):
        return self.principal_due + self.capitalised_due

    def interest(self):
        return self.closed_years + _round(self.running)

    def pay(self, day, amount):
        "6:44 BW within the claim: running interest, capitalised, principal."
        to_running = min(amount, _round(self.running) - self.running_paid)
        self.running_paid += to_running
        left = amount - to_running
        to_capitalised = min(left, self.capitalised_due)
        self.capitalised_due -= to_capitalised
        left -= to_capitalised
        to_principal = min(left, self.principal_due)
        self.principal_due -= to_principal
        return PaymentApplied(day, amount, to_running + to_capitalised,
            to_principal, left - to_principal)

    def capitalise(self, day):
        "A full year of default has passed (6:119 lid 2, 6:119a lid 3 BW)."
        year = _round(self.running)
        added = year - self.running_paid
        self.capitalised_due += added
        self.closed_years += year
        self.running, self.running_paid = Decimal(0), Decimal('0.00')
        return Capitalisation(day, added, self.base, year, year - added)


def _accrue(claim, start, end, table, kind, payments, unpublished):
    periods, capitalisations, applied = [], [], []
    pending = list(payments)
    events = sorted({d for d, _ in pending} | {unpublished})
    years, day = 1, start
    anniversary = _anniversary(start, 1)
    while True:
        while pending and pending[0][0] == day:
            applied.append(claim.pay(day, pending.pop(0)[1]))
        if day >= end:
            break
        stop = _next_boundary(day, end, table, anniversary, events)
        period = _period(day, stop, table, kind, claim.base, unpublished)
        periods.append(period)
        claim.running += period.amount
        if stop == anniversary:
            # The year runs from the start of default whatever was paid
            # in between (art. 6:119 lid 2 BW).
            capitalisations.append(claim.capitalise(stop))
            years += 1
            anniversary = _anniversary(start, years)
        day = stop
    return tuple(periods), tuple(capitalisations), tuple(applied)


def _payments(payments, start, end):
    """(date, amount) pairs in date order; a payment before the default
    counts on its first day, a payment after `end` is refused."""
    result = []
    for i, payment in enumerate(payments or ()):
        try:
            day, amount = payment
        except (TypeError, ValueError):
            raise ValueError(
                f'payments[{i}] must be a (date, amount) pair') from None
        day = _date(day, f'payments[{i}] date')
        if day > end:
            raise ValueError(f'payments[{i}]: paid on {day}, after the end '
                f'of the computation ({end})')
        result.append((max(day, start),
                _money(amount, f'payments[{i}] amount', positive=True)))
    return sorted(result, key=lambda p: p[0])


def _check_published(table, end, provisional):
    unpublished = known_until(table)
    if end > unpublished and not provisional:
        raise ValueError(
            f'end: no published statutory rate from {unpublished} on (the '
            f'rate table ends with the half year from '
            f'{table[-1].start_date}); compute up to {unpublished} at the '
            'latest, or add the published rate to the table; a projection '
            'with the last known rate must be asked for explicitly '
            '(provisional)')
    if end > _anniversary(unpublished, PROVISIONAL_YEARS):
        raise ValueError(
            f'end: {end} is more than {PROVISIONAL_YEARS} years after the '
            f'last published statutory rate (up to {unpublished}); add the '
            'published rates to the table first')
    return unpublished


def statutory_interest(principal, start, end, kind='consumer', rates=None,
        payments=(), provisional=False):
    """Statutory interest from `start` (first day of default, inclusive)
    to `end` (payment/calculation day, exclusive).

    payments: (date, amount) paid on this claim (net of costs), each
    allocated to interest then principal (art. 6:44 BW) on its day.
    provisional: allow an `end` beyond the last published half year by
    carrying the last rate forward; every such period is marked."""
    principal = _money(principal, 'principal')
    start, end = _date(start, 'start'), _date(end, 'end')
    if end < start:
        raise ValueError(f'end ({end}) must not be before start ({start})')
    if kind not in INTEREST_KINDS:
        raise ValueError(
            f'kind must be one of {INTEREST_KINDS}, got {kind!r}')
    table = load_rates() if rates is None else _normalise_rates(rates)
    unpublished = _check_published(table, end, provisional)
    payments = _payments(payments, start, end)
    claim = _Claim(principal)
    periods, capitalisations, applied = _accrue(
        claim, start, end, table, kind, payments, unpublished)
    interest = claim.interest()
    interest_paid = sum((p.to_interest for p in applied), Decimal('0.00'))
    principal_paid = sum((p.to_principal for p in applied), Decimal('0.00'))
    warnings = {f'rate from {p.rate_start} has confidence {p.confidence!r}'
        for p in periods if p.confidence not in ('sourced', 'given',
            'provisional')}
    if end > unpublished:
        warnings.add(f'no published rate from {unpublished}: the rate from '
            f'{table[-1].start_date} is carried forward provisionally')
    return InterestResult(
        principal=principal, start=start, end=end, kind=kind,
        periods=periods, capitalisations=capitalisations,
        interest=interest, total=principal - principal_paid
        + interest - interest_paid, day_count=DAY_COUNT,
        rule=RULE_INTEREST[kind], warnings=tuple(sorted(warnings)),
        payments=applied, interest_paid=interest_paid,
        interest_due=interest - interest_paid,
        principal_paid=principal_paid,
        principal_due=principal - principal_paid,
        provisional_from=unpublished if end > unpublished else None)


# ------------------------------------------------------ payment allocation

RULE_ALLOCATION = ('art. 6:44 BW: a payment goes first to costs, then to '
    'interest, then to the principal')


@dataclasses.dataclass(frozen=True)
class Allocation(_Result):
    amount: Decimal
    costs: Decimal
    interest: Decimal
    principal: Decimal
    to_costs: Decimal
    to_interest: Decimal
    to_principal: Decimal
    overpayment: Decimal
    remaining_costs: Decimal
    remaining_interest: Decimal
    remaining_principal: Decimal
    rule: str = RULE_ALLOCATION
    currency: str = CURRENCY


def allocate_payment(amount, costs, interest, principal):
    "Split a payment over costs, interest and principal (art. 6:44 BW)."
    amount = _money(amount, 'amount')
    debts = [_money(costs, 'costs'), _money(interest, 'interest'),
        _money(principal, 'principal')]
    left, paid = amount, []
    for debt in debts:
        part = min(left, debt)
        paid.append(part)
        left -= part
    return Allocation(amount, *debts, *paid, left,
        *(debt - part for debt, part in zip(debts, paid)))


# ------------------------------------------------------ the 14-day letter

TERM_WORDING_NL = ('binnen veertien dagen vanaf de dag nadat deze brief bij '
    'u is bezorgd')
TERM_WORDING_EN = ('within fourteen days from the day after this letter '
    'was delivered to you')
TERM_DAYS = 14
CHANNELS = ('email', 'post')
RULE_TERM = ('art. 6:96 lid 6 BW; HR 25-11-2016, ECLI:NL:HR:2016:2704: the '
    '14 days start the day after receipt')
RULE_ATW = ('Algemene termijnenwet art. 1: a statutory term ending on a '
    'Saturday, Sunday or public holiday runs to the next working day')


@dataclasses.dataclass(frozen=True)
class TermResult(_Result):
    sent_date: dt.date
    channel: str
    post_delivery_days: int
    receipt_date: dt.date
    term_start: dt.date
    term_end: dt.date
    term_end_unextended: dt.date    # receipt + 14, before the Atw shift
    costs_chargeable_from: dt.date
    skipped_days: tuple             # ((date, reason), ...)
    wording_nl: str
    wording_en: str
    rule: str


@functools.lru_cache(maxsize=None)
def _nl_holidays(year):
    return holidays.country_holidays('NL', years=year)


def _closed_reason(day):
    """Why `day` is not a working day, or None.  The holidays package's NL
    list plus 5 May every year (Atw art. 3 names it yearly; the package
    only lists it in lustrum years): erring towards a later date never
    makes costs chargeable too early."""
    if day.weekday() >= 5:
        return day.strftime('%A')
    name = _nl_holidays(day.year).get(day)
    if name:
        return name
    if (day.month, day.day) == (5, 5):
        return "Liberation Day (Algemene termijnenwet art. 3)"
    return None


def _add_working_days(day, count, skipped):
    while count:
        day += dt.timedelta(days=1)
        reason = _closed_reason(day)
        if reason:
            skipped.append((day, reason))
        else:
            count -= 1
    return day


def _next_working_day(day, skipped):
    while (reason := _closed_reason(day)):
        skipped.append((day, reason))
        day += dt.timedelta(days=1)
    return day


def fourteen_day_term(sent_date, channel='email', post_delivery_days=2,
        extend_to_working_day=True):
    """Dates of the 14-day letter (consumers, art. 6:96 lid 6 BW).

    Post is assumed received after `post_delivery_days` working days.
    The term ends on receipt + 14 days; by default a term ending on a
    weekend or holiday is extended under the Algemene termijnenwet.
    """
    sent_date = _date(sent_date, 'sent_date')
    if channel not in CHANNELS:
        raise ValueError(f'channel must be one of {CHANNELS}, got {channel!r}')
    if (isinstance(post_delivery_days, bool)
            or not isinstance(post_delivery_days, int)
            or post_delivery_days < 0):
        raise ValueError('post_delivery_days must be an int >= 0, got '
            f'{post_delivery_days!r}')
    skipped = []
    receipt = (sent_date if channel == 'email'
        else _add_working_days(sent_date, post_delivery_days, skipped))
    unextended = receipt + dt.timedelta(days=TERM_DAYS)
    term_end = (_next_working_day(unextended, skipped)
        if extend_to_working_day else unextended)
    rule = RULE_TERM + (f'; {RULE_ATW}' if term_end != unextended else '')
    return TermResult(
        sent_date=sent_date, channel=channel,
        post_delivery_days=post_delivery_days, receipt_date=receipt,
        term_start=receipt + dt.timedelta(days=1), term_end=term_end,
        term_end_unextended=unextended,
        costs_chargeable_from=term_end + dt.timedelta(days=1),
        skipped_days=tuple(skipped), wording_nl=TERM_WORDING_NL,
        wording_en=TERM_WORDING_EN, rule=rule)


# ------------------------------------------------------------ CLI reports

def _table(rows, aligns):
    widths = [max(len(r[i]) for r in rows) for i in range(len(aligns))]
    return [
        '  '.join(c.rjust(w) if a == 'r' else c.ljust(w)
            for c, w, a in zip(row, widths, aligns)).rstrip()
        for row in rows]


def costs_report(principal, kind='consumer', vat_rate=None, as_json=False,
        vat_conditions=None):
    "Text or JSON report of collection_costs for `payt costs`."
    result = collection_costs(principal, kind, vat_rate=vat_rate,
        vat_conditions=vat_conditions)
    if as_json:
        return json.dumps(result.to_dict(), indent=2)
    rows = [('From', 'To', 'Rate', 'Base', 'Amount')]
    rows += [(_fmt(b.lower), _fmt(b.upper) if b.upper is not None else '-',
            f'{b.rate}%', _fmt(b.base), f'{b.amount:,.4f}')
        for b in result.brackets if b.base]
    lines = [f'Collection costs, {result.debtor_kind}, principal '
        f'{result.currency} {_fmt(result.principal)}', '']
    lines += _table(rows, 'rrrrr')
    lines += ['', f'Staffel: {result.staffel_amount:,.4f}'
        + (' -> minimum EUR 40' if result.minimum_applied else '')
        + (' -> maximum EUR 6,775' if result.maximum_applied else ''),
        f'Costs: {_fmt(result.costs)}']
    if result.vat_rate:
        lines.append(f'VAT {result.vat_rate}%: {_fmt(result.vat_amount)}')
    lines += [f'Total: {result.currency} {_fmt(result.total)}',
        f'Rule: {result.rule}']
    return '\n'.join(lines)


def interest_report(principal, start, end, kind='consumer', as_json=False,
        payments=(), provisional=False):
    "Text or JSON report of statutory_interest for `payt interest`."
    result = statutory_interest(principal, start, end, kind,
        payments=payments, provisional=provisional)
    if as_json:
        return json.dumps(result.to_dict(), indent=2)
    rows = [('From', 'To', 'Days', 'Rate', 'Base', 'Amount')]
    rows += [(p.start.isoformat(),
            (p.end - dt.timedelta(days=1)).isoformat(), str(p.days),
            f'{p.rate}%', _fmt(p.base), f'{p.amount:,.4f}')
        for p in result.periods]
    lines = [f'Statutory interest ({kind}), principal {result.currency} '
        f'{_fmt(result.principal)}, {result.start} up to {result.end} '
        '(not counted)', '']
    lines += _table(rows, 'llrrrr')
    lines.append('')
    lines += [f'Paid on {p.date}: {_fmt(p.amount)} (interest '
        f'{_fmt(p.to_interest)}, principal {_fmt(p.to_principal)}'
        + (f', overpaid {_fmt(p.overpayment)}' if p.overpayment else '')
        + ')' for p in result.payments]
    lines += [f'Capitalised on {c.date}: {_fmt(c.amount)}'
        + (f' (year {_fmt(c.year_interest)} less paid {_fmt(c.paid)})'
            if c.paid else '')
        for c in result.capitalisations]
    lines += [f'Interest: {_fmt(result.interest)}']
    if result.payments:
        lines += [f'Interest paid: {_fmt(result.interest_paid)}',
            f'Interest due: {_fmt(result.interest_due)}',
            f'Principal due: {_fmt(result.principal_due)}']
    lines += [f'Total due: {result.currency} {_fmt(result.total)}',
        f'Day count: {result.day_count}', f'Rule: {result.rule}']
    lines += [f'Warning: {w}' for w in result.warnings]
    return '\n'.join(lines)
