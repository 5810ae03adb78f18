"""Scheduling: what is retried and how long, one sync per link, one beat,
a rate limit shared by workers, logs redacted without mangling numbers.

Redis tests use DB 13 and a key prefix of their own; they fail (never skip)
when nothing listens on 127.0.0.1:6379 (CI starts Redis)."""
import subprocess
import sys
import threading
import uuid

import pytest

from payt_hub import celery_app, logsafe, shared
from payt_hub.adapters import get_adapter
from payt_hub.errors import LinkError, TransientError, Unreachable
from payt_hub.retry import TASK_RETRY_DELAYS, sync_settings, task_countdown

from .conftest import snelstart_settings

REDIS = 'redis://127.0.0.1:6379/13'


@pytest.fixture
def redis_env(monkeypatch):
    monkeypatch.setenv('PAYT_REDIS_URL', REDIS)
    monkeypatch.setenv('PAYT_REDIS_PREFIX', f'test-{uuid.uuid4().hex[:10]}')
    assert shared.client().ping(), 'no Redis on 127.0.0.1:6379 (CI starts it)'
    return monkeypatch


@pytest.fixture
def eager(monkeypatch):
    celery_app.configure('in-process')
    yield
    celery_app.configure()


# -- logs -------------------------------------------------------------------
def test_redaction_replaces_whole_secrets_and_leaves_numbers_alone():
    logsafe.register('00000', 'sim-koppelsleutel-0001')
    text = ('request took 4.930338591000009s, code 00000, '
            'url ?code=00000&x=1, key sim-koppelsleutel-0001. id 100000')
    clean = logsafe.redact(text)
    assert '4.930338591000009s' in clean
    assert 'id 100000' in clean
    assert 'code ***,' in clean and '?code=***&' in clean
    assert 'key ***.' in clean
    assert '***9' not in clean and 'koppelsleutel' not in clean


# -- what is retried ----------------------------------------------------------
def test_network_error_while_validating_is_transient_not_configuration():
    adapter = get_adapter('snelstart', client_key='k' * 12,
                          subscription_key='s' * 12,
                          base_url='http://127.0.0.1:9/v2/',
                          auth_url='http://127.0.0.1:9/b2b/token',
                          attempts=1, timeout=1)
    with adapter, pytest.raises(TransientError) as err:
        adapter.validate()
    # still named in words for the consultant who activates a link
    assert isinstance(err.value, LinkError)
    assert err.value.reason == 'unreachable'


def test_slow_source_is_a_temporary_error(snelstart_sim):
    "Replies slower than the timeout: retried later, not a bad link"
    snelstart_sim.fail('timeout', seconds=1.5, count=10)
    adapter = get_adapter('snelstart', **snelstart_settings(
        snelstart_sim, timeout=0.5, attempts=2))
    with adapter, pytest.raises(Unreachable):
        adapter.validate()


def test_scheduled_syncs_wait_for_slow_replies():
    "A 40 s reply is waited for; the link's own settings still win"
    assert sync_settings({})['timeout'] > 40
    assert sync_settings({'timeout': 5})['timeout'] == 5


def test_retries_spread_over_hours_and_honour_retry_after():
    delays = [task_countdown(n, jitter=0) for n in
              range(len(TASK_RETRY_DELAYS))]
    assert delays == sorted(delays)
    assert sum(delays) >= 6 * 3600
    assert task_countdown(0, retry_after=600, jitter=0) == 600
    assert celery_app.sync_link.max_retries == len(TASK_RETRY_DELAYS)


def test_task_retries_transient_errors_but_not_link_errors(eager,
                                                           monkeypatch):
    calls = []

    def flaky(link_id):
        calls.append(link_id)
        if len(calls) < 3:
            raise TransientError('HTTP 503')
        return {'link': link_id, 'ok': True}
    monkeypatch.setattr(celery_app, '_sync', flaky)
    assert celery_app.sync_link.delay('flaky').get() == {
        'link': 'flaky', 'ok': True}
    assert len(calls) == 3

    calls.clear()

    def misconfigured(link_id):
        calls.append(link_id)
        raise LinkError('partner key refused', 'wrong_partner_key')
    monkeypatch.setattr(celery_app, '_sync', misconfigured)
    with pytest.raises(LinkError):
        celery_app.sync_link.delay('bad').get()
    assert len(calls) == 1


def test_celery_settings():
    conf = celery_app.app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    visibility = conf.broker_transport_options['visibility_timeout']
    # a retry waiting in a worker (ETA) must not be delivered twice
    assert visibility > max(TASK_RETRY_DELAYS) * 1.1
    assert conf.task_soft_time_limit < conf.task_time_limit < visibility
    assert shared.LOCK_TIMEOUT > conf.task_time_limit


# -- one at a time ----------------------------------------------------------
LOCK_FROM_ANOTHER_PROCESS = '''
from payt_hub import shared
try:
    with shared.sync_lock(%r):
        print('acquired')
except shared.LinkBusy:
    print('busy')
'''


def _other_worker(code):
    "Run code in another process (another worker), same environment."
    return subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_one_sync_per_link_across_workers(redis_env):
    with shared.sync_lock('link-7'):
        assert _other_worker(LOCK_FROM_ANOTHER_PROCESS % 'link-7') == 'busy'
        assert _other_worker(
            LOCK_FROM_ANOTHER_PROCESS % 'link-8') == 'acquired'
    assert _other_worker(LOCK_FROM_ANOTHER_PROCESS % 'link-7') == 'acquired'


def test_task_on_a_busy_link_does_nothing(redis_env, eager, monkeypatch):
    calls = []
    monkeypatch.setattr(celery_app, '_sync',
                        lambda link_id: calls.append(link_id))
    with shared.sync_lock('busy-link'):
        result = celery_app.sync_link.delay('busy-link').get()
    assert result == {'link': 'busy-link', 'skipped': 'busy'}
    assert calls == []


def test_a_second_beat_queues_nothing(redis_env):
    assert shared.beat_tick(900) is True
    assert shared.beat_tick(900) is False


# -- rate limit -------------------------------------------------------------
def test_rate_limit_is_shared_by_workers(redis_env):
    "Two workers on one vendor key share its limit; another key is free"
    first = shared.RateLimit('exact', '4/second', 'client-a', 'division-1')
    second = shared.RateLimit('exact', '4/second', 'client-a', 'division-1')
    other = shared.RateLimit('exact', '4/second', 'client-b', 'division-1')
    for _ in range(2):
        first.wait()
        second.wait()
    assert first.remaining() == second.remaining() == 0
    assert other.remaining() == 4
    waited = threading.Event()
    second.sleep = lambda s: (waited.set(), __import__('time').sleep(s))
    second.wait()  # the fifth call of the second must wait
    assert waited.is_set()
    # the key itself is never stored in Redis
    keys = [k.decode() for k in shared.client().keys(
        f'{shared.prefix()}:*')]
    assert keys and not any('client-a' in k for k in keys)


def test_unreachable_package_is_booked_as_temporary_and_retried(
        monkeypatch):
    "The ERP's link shows a temporary error; the task gets it to retry"
    from payt_hub import erp
    booked = []

    def record_result(cfg, link_id, ok, message, items):
        booked.append((link_id, ok, message))
        return {'state': 'failed'}
    monkeypatch.setattr(erp, 'record_result', record_result)
    link = {'id': 3, 'administration': 1, 'package': 'snelstart',
            'error': None, 'settings': {
                'client_key': 'k' * 12, 'subscription_key': 's' * 12,
                'base_url': 'http://127.0.0.1:9/v2/',
                'auth_url': 'http://127.0.0.1:9/b2b/token',
                'attempts': 1, 'timeout': 1}}
    with pytest.raises(TransientError):
        erp.sync_link(None, link, progress=False, raise_transient=True)
    (link_id, ok, message), = booked
    assert (link_id, ok) == (3, False)
    assert message.startswith('temporary error, retried later: ')
