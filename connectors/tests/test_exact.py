"""Exact Online: activation by authorization code, a sync, rotating refresh
tokens (also with a crash between Exact's answer and the save), the
minutely limit shared by two workers. Against the simulator on a real
port; the rate limit test uses Redis DB 13 with a prefix of its own."""
import functools
import json
import threading
import time
import uuid
from decimal import Decimal

import pytest

from payt_hub import shared
from payt_hub.adapters import get_adapter
from payt_hub.adapters.exact import parse_odata_date
from payt_hub.errors import LinkError, SourceDataError
from payt_hub.simulators.exact import (CLIENT_ID, CLIENT_SECRET, DIVISION,
                                       REDIRECT_URI, ExactSimulator)
from payt_hub.sync import MemorySink, run_sync


class Killed(BaseException):
    "The process died here (not an error any code would catch)."


@pytest.fixture
def exact_sim():
    sim = ExactSimulator(debtors=8, items=40, seed=5, page_size=7,
                         currencies=('EUR', 'EUR', 'USD')).start()
    yield sim
    sim.stop()


class Store:
    "What the ERP keeps for a link: its credentials, saved on rotation."

    def __init__(self, **values):
        self.values = dict(values)
        self.saves = 0

    def save(self, values):
        self.values.update(values)
        self.saves += 1


def adapter(sim, store, **overrides):
    settings = dict(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    redirect_uri=REDIRECT_URI, base_url=sim.url,
                    timeout=5, attempts=2, retry_wait=0.01,
                    rate_limit='1000/minute', **store.values)
    settings.update(overrides)
    made = get_adapter('exact', **settings)
    made.credentials_saver = store.save
    return made


def test_activation_by_authorization_code(exact_sim):
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store) as first:
        first.validate()
    assert store.values['division'] == DIVISION
    assert store.values['refresh_token'].startswith('sim-refresh-')
    assert store.values['authorization_code'] is None
    # a code works once: pasting it again is refused, in words
    again = Store(authorization_code='sim-code-unknown')
    with adapter(exact_sim, again) as second, \
            pytest.raises(LinkError) as err:
        second.validate()
    assert err.value.reason == 'authorization_lost'
    assert 'paste the new code' in str(err.value)


def test_wrong_client_secret_is_a_configuration_error(exact_sim):
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store, client_secret='not-it') as wrong, \
            pytest.raises(LinkError) as err:
        wrong.validate()
    assert err.value.reason == 'wrong_client_key'


def test_sync_reads_every_open_item_with_currency_and_credit_notes(
        exact_sim):
    account = sorted(exact_sim.accounts)[0]
    credit = exact_sim.add_invoice(account, Decimal('-45.50'))
    store = Store(authorization_code=exact_sim.authorize())
    sink = MemorySink()
    with adapter(exact_sim, store) as exact:
        exact.validate()
        result = run_sync(exact, sink, progress=False)
    assert sink.open_items() == exact_sim.open_items()
    assert len(sink.debtors) == len(exact_sim.accounts)
    assert result.pages > 6  # paged through __next, 7 rows a page
    assert result.converged
    usd = [i for i in sink.items.values() if i.get('currency') == 'USD']
    assert usd and all(i['open_amount'] == i['amount'] for i in usd)
    note = sink.items[str(credit)]
    assert note['open_amount'] == '-45.50'
    assert note['description'].startswith('Creditnota')
    # every sync lists every account again: a changed name arrives
    exact_sim.control_modify_account(account, name='Nieuwe Naam BV')
    assert sink.load_cursor('debtors') is None  # the pass was complete
    with adapter(exact_sim, store) as exact:
        pages = list(exact.read('debtors', sink.load_cursor('debtors')))
        run_sync(exact, sink, progress=False)
    assert sorted(r['ID'] for p in pages for r in p.records) == \
        sorted(exact_sim.accounts)
    assert sink.debtors[account]['name'] == 'Nieuwe Naam BV'


def test_paid_and_deleted_entries_are_closed_by_explicit_id(exact_sim):
    """ReceivablesList only shows open entries: one paid in full or deleted
    is asked for by HID, and closed by id once Exact confirms it is gone;
    a part payment lowers the open amount (no payment records: Exact's list
    does not say what was paid)."""
    store = Store(authorization_code=exact_sim.authorize())
    sink = MemorySink()
    with adapter(exact_sim, store) as exact:
        run_sync(exact, sink, progress=False)
        hids = sorted(exact_sim.receivables)
        exact_sim.control_pay(hids[0])
        exact_sim.control_delete(hids[9])
        exact_sim.control_pay(hids[3], amount='10.00')
        result = run_sync(exact, sink, progress=False)
    closing = [b for b in sink.batches if b.get('closed_items')]
    assert {i for b in closing for i in b['closed_items']} == \
        {str(hids[0]), str(hids[9])}
    assert sink.open_items() == exact_sim.open_items()
    assert not sink.payments
    assert result.converged
    assert result.evidence['source'] == result.evidence['erp']


def test_pages_cover_hid_spans_in_numeric_order(exact_sim):
    "HID 9 comes before HID 10; each page says which HIDs it covers"
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store) as exact:
        pages = list(exact.read('open_items', None))
        assert exact.order_key('9') < exact.order_key('10')
        resumed = list(exact.read('open_items', pages[1].next_cursor))
        # a cursor of an older hub (the __next link only) starts over
        older = json.loads(pages[1].next_cursor)
        del older['after']
        restarted = next(exact.read('open_items', json.dumps(older)))
        fetched = exact.fetch_items(['3', '12', '999999'])
        debtors = exact.fetch_debtors([sorted(exact_sim.accounts)[1],
                                       '00000000-0000-4000-8000-0000000000ff'])
    hids = [r['HID'] for p in pages for r in p.records]
    assert hids == sorted(exact_sim.receivables)
    assert [p.last for p in pages] == [False] * (len(pages) - 1) + [True]
    assert pages[-1].next_cursor is None
    assert pages[0].after is None
    for before, page in zip(pages, pages[1:]):
        assert page.after == before.upto == str(before.records[-1]['HID'])
    # a stored cursor continues after the page it was stored with
    assert [p.after for p in resumed] == [p.after for p in pages[2:]]
    assert restarted.after is None and restarted.records == pages[0].records
    assert [r['HID'] for r in fetched] == [3, 12]
    assert [r['ID'] for r in debtors] == [sorted(exact_sim.accounts)[1]]


def test_each_refresh_rotates_and_is_saved_before_use(exact_sim):
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store) as exact:
        exact.validate()
    first = store.values['refresh_token']
    exact_sim.control_expire_tokens()
    with adapter(exact_sim, store) as exact:
        list(exact.read('open_items', None))
    assert store.values['refresh_token'] != first
    assert first not in exact_sim.refresh_tokens  # the old one is dead


def test_killed_after_saving_the_new_token_resumes(exact_sim):
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store) as exact:
        exact.validate()

    def save_then_die(values):
        store.save(values)
        raise Killed()
    dying = adapter(exact_sim, store)
    dying.credentials_saver = save_then_die
    with pytest.raises(Killed):
        list(dying.read('open_items', None))
    dying.close()
    sink = MemorySink()
    with adapter(exact_sim, store) as exact:
        run_sync(exact, sink, progress=False)
    assert sink.open_items() == exact_sim.open_items()


def test_killed_between_refresh_and_save_says_authorize_again(exact_sim):
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store) as exact:
        exact.validate()
    stored = store.values['refresh_token']

    def die(values):
        raise Killed()
    dying = adapter(exact_sim, store)
    dying.credentials_saver = die
    with pytest.raises(Killed):
        dying.validate()
    dying.close()
    assert store.values['refresh_token'] == stored  # nothing half-saved
    with adapter(exact_sim, store) as exact, \
            pytest.raises(LinkError) as err:
        exact.validate()
    # a configuration error (never retried), saying what to do
    assert err.value.reason == 'authorization_lost'
    assert 'approve the app in Exact Online again' in str(err.value)


def test_next_link_to_another_host_or_division_is_refused(exact_sim):
    store = Store(authorization_code=exact_sim.authorize())
    with adapter(exact_sim, store) as exact:
        exact.validate()
        with pytest.raises(SourceDataError):
            exact._own_path('http://evil.example/api/v1/999/x?$skiptoken=1')
        assert exact._own_path(
            f'http://other.example/api/v1/{DIVISION}/read/x?a=1') == \
            f'/api/v1/{DIVISION}/read/x?a=1'


def test_odata_dates():
    assert str(parse_odata_date('/Date(1735689600000)/')) == '2025-01-01'
    assert parse_odata_date(None) is None


class VirtualClock:
    """time.time() for the limiter and the simulator alike, moved on only
    by the limiter's waits: how long a loaded machine takes between the
    limiter's count and the simulator's cannot change what either sees."""

    def __init__(self):
        self.now = time.time()
        self.lock = threading.Lock()
        self.waited = 0.0

    def time(self):
        with self.lock:
            return self.now

    def sleep(self, seconds):
        with self.lock:
            self.now += seconds
            self.waited += seconds


def test_minutely_limit_is_shared_by_two_workers(exact_sim, monkeypatch):
    "Two workers on one client and division stay under Exact's limit"
    monkeypatch.setenv('PAYT_REDIS_URL', 'redis://127.0.0.1:6379/13')
    monkeypatch.setenv('PAYT_REDIS_PREFIX', f'test-{uuid.uuid4().hex[:10]}')
    assert shared.client().ping(), 'no Redis on 127.0.0.1:6379 (CI starts it)'
    clock = VirtualClock()
    monkeypatch.setattr(time, 'time', clock.time)
    monkeypatch.setattr(shared, 'RateLimit',
                        functools.partial(shared.RateLimit,
                                          sleep=clock.sleep))
    # Exact allows 60 calls a minute (the simulator 10 here, in fewer
    # calls); each worker's limiter 9, counted together in Redis. A call
    # one worker has counted may reach the simulator after the other
    # worker's wait moved the clock on: the tenth call of the window is
    # that margin.
    exact_sim.rate_limit, exact_sim.rate_window = 10, 60.0
    stores = [Store(authorization_code=exact_sim.authorize(),
                    division=DIVISION) for _ in range(2)]
    results, errors = {}, []

    def worker(n):
        try:
            with adapter(exact_sim, stores[n],
                         rate_limit='9 per 60 seconds') as exact:
                results[n] = [r for page in exact.read('open_items', None)
                              for r in page.records]
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors
    assert exact_sim.rejected_429 == 0
    assert len(results[0]) == len(results[1]) == len(exact_sim.receivables)
    assert len(exact_sim.calls) >= 12  # more than one window's worth
    assert clock.waited >= 60  # so the workers waited for each other
