"""Convergence: after a sync the ERP's open items equal the package's (ids,
open amounts, currencies), also when the package changes while the sync
pages through it and when the hub or the source dies at any point.

The simulators apply a seeded schedule of changes (add, pay, credit,
change, delete) at given data requests; hypothesis draws the schedules and
the kills. A change can only be missed by the sync during which it
happened, and only for the records it touched (a record changed after the
last pass read it); the next sync must then converge exactly.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payt_hub.adapters import get_adapter
from payt_hub.errors import HubError
from payt_hub.simulators.exact import ExactSimulator
from payt_hub.simulators.imuis import ImuisSimulator
from payt_hub.simulators.snelstart import SnelstartSimulator
from payt_hub.sync import MemorySink, SinkCrash, run_sync

from .conftest import exact_settings, imuis_settings, snelstart_settings


def exact_simulator(**kwargs):
    "Small pages, and some entries in dollars (amounts in their currency)"
    return ExactSimulator(page_size=5, currencies=('EUR', 'EUR', 'USD'),
                          **kwargs)


SIMULATORS = {
    'imuis': (ImuisSimulator, imuis_settings),
    'snelstart': (SnelstartSimulator, snelstart_settings),
    'exact': (exact_simulator, exact_settings),
}
PACKAGES = sorted(SIMULATORS)
KINDS = ['add', 'pay', 'credit', 'change', 'delete']


def erp_view(sink):
    return {k: (v, c) for k, (v, c) in sink.open_state().items()}


def package_view(sim):
    return {k: (f'{__import__("decimal").Decimal(v):.2f}', c)
            for k, (v, c) in sim.open_view().items()}


class Run:
    """One simulator, one ERP (MemorySink), syncs that may be killed."""

    def __init__(self, package, seed=3, debtors=6, items=28):
        cls, settings = SIMULATORS[package]
        self.package = package
        self.sim = cls(debtors=debtors, items=items, seed=seed).start()
        self.settings = settings(self.sim, attempts=2)
        self.sink = MemorySink()

    def sync(self):
        adapter = get_adapter(self.package, **self.settings)
        # rotated credentials (Exact's refresh token) kept for the next sync
        adapter.credentials_saver = self.settings.update
        with adapter:
            return run_sync(adapter, self.sink, progress=False)

    def sync_until_done(self, hub_kills=()):
        """Sync; a killed hub or a dead source makes it try again (as the
        next Celery retry would) until a sync completes."""
        kills = list(hub_kills)
        for _ in range(len(kills) + 8):
            if kills:
                self.sink.crash_after = len(self.sink.batches) + kills.pop(0)
            start = len(self.sim.changes)
            try:
                result = self.sync()
            except (SinkCrash, HubError):
                self.sim.control_reset_failures()
                continue
            finally:
                self.sink.crash_after = None
            touched = {i for _, ids in self.sim.changes[start:] for i in ids}
            return result, touched
        raise AssertionError('no sync completed')

    def stop(self):
        self.sim.stop()


def assert_drift_only_in(run, touched):
    erp, package = erp_view(run.sink), package_view(run.sim)
    drift = {k for k in set(erp) | set(package)
             if erp.get(k) != package.get(k)}
    assert drift <= touched, (drift - touched)


def assert_converged(run):
    assert erp_view(run.sink) == package_view(run.sim)


schedules = st.lists(st.tuples(st.integers(1, 30), st.sampled_from(
    KINDS + ['outage']), st.integers(0, 10**6)), max_size=8)
hub_kills = st.lists(st.integers(0, 6), max_size=3)


@pytest.mark.parametrize('package', PACKAGES)
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(first=schedules, second=schedules, kills=hub_kills,
       seed=st.integers(1, 50))
def test_random_changes_and_kills_converge(package, first, second, kills,
                                           seed):
    run = Run(package, seed=seed)
    try:
        # a first sync while the package changes, the hub and the source
        # dying at drawn moments
        run.sim.schedule = list(first)
        result, touched = run.sync_until_done(kills)
        assert_drift_only_in(run, touched)
        # more changes during the next sync
        run.sim.schedule = [(run.sim.data_requests + at, kind, s)
                            for at, kind, s in second]
        result, touched = run.sync_until_done()
        assert_drift_only_in(run, touched)
        # and a sync in quiet converges exactly, with matching evidence
        run.sim.schedule = []
        result, _ = run.sync_until_done()
        assert_converged(run)
        assert result.converged
        assert result.evidence['source'] == result.evidence['erp']
    finally:
        run.stop()


@pytest.mark.parametrize('package', PACKAGES)
@pytest.mark.parametrize('kind', KINDS)
def test_change_during_the_first_pass_is_in_the_erp_after_it(package, kind):
    """A change made while the sync pages through the items (before the
    last page) is in the ERP when that same sync ends."""
    run = Run(package)
    try:
        run.sim.schedule = [(at, kind, at) for at in (3, 4, 5)]
        result, touched = run.sync_until_done()
        assert len(run.sim.changes) == 3 and touched
        assert_converged(run)
        assert result.converged and result.rounds >= 2
    finally:
        run.stop()


@pytest.mark.parametrize('package', PACKAGES)
def test_deleted_items_are_closed_by_explicit_id(package):
    run = Run(package)
    try:
        run.sync_until_done()
        run.sim.schedule = [(run.sim.data_requests + 1, 'delete', 1),
                            (run.sim.data_requests + 1, 'delete', 2)]
        run.sync_until_done()
        deleted = {i for kind, ids in run.sim.changes for i in ids}
        assert deleted and not deleted & set(run.sink.open_items())
        closing = [b for b in run.sink.batches if b.get('closed_items')]
        assert {i for b in closing for i in b['closed_items']} == deleted
        assert all(not b.get('complete') for b in run.sink.batches)
        assert_converged(run)
    finally:
        run.stop()


def test_empty_package_closes_nothing_without_asking():
    """An empty listing is no reason to close: every item is asked for by
    id first, and only those the package no longer has are closed."""
    run = Run('snelstart')
    try:
        run.sync_until_done()
        before = dict(run.sink.open_items())
        run.sim.fail('malformed', count=1, op='verkoopfacturen')
        with pytest.raises(HubError):
            run.sync()
        assert run.sink.open_items() == before
    finally:
        run.stop()
