"""Celery: one eager in-process test, one with the real Redis broker."""
import json
import uuid

import pytest

from payt_hub import celery_app
from payt_hub.links import memory_sink

from .conftest import imuis_settings, snelstart_settings


@pytest.fixture
def links_file(tmp_path, monkeypatch, imuis_sim, snelstart_sim):
    prefix = uuid.uuid4().hex[:8]
    links = {
        f'{prefix}-1': {'adapter': 'imuis', 'administration_id': 1,
                        'settings': imuis_settings(
                            imuis_sim, attempts=2,
                            partner_key='env:TEST_IMUIS_KEY')},
        f'{prefix}-2': {'adapter': 'snelstart', 'administration_id': 2,
                        'settings': snelstart_settings(snelstart_sim,
                                                       attempts=2)},
    }
    path = tmp_path / 'links.json'
    path.write_text(json.dumps(links))
    monkeypatch.setenv('PAYT_LINKS_FILE', str(path))
    monkeypatch.setenv('TEST_IMUIS_KEY', 'abcdefghijklmnopqrstuvwxyz')
    yield prefix
    celery_app.configure()


def test_eager_task_syncs_and_autoretries_on_5xx(links_file, imuis_sim):
    celery_app.configure('in-process')
    assert celery_app.app.conf.task_always_eager
    # two 500s exhaust the adapter's 2 attempts: the task itself retries
    imuis_sim.fail('500', count=2, op='GetStamtabelRecords')
    result = celery_app.sync_link.delay(f'{links_file}-1').get()
    assert result['records']['open_items'] == len(imuis_sim.open_items())
    sink = memory_sink(f'{links_file}-1')
    assert sink.open_items() == imuis_sim.open_items()


def _redis_up():
    import socket
    try:
        socket.create_connection(('127.0.0.1', 6379), 1).close()
        return True
    except OSError:
        return False


def test_task_through_real_redis_broker(links_file, snelstart_sim):
    # fails, never skips: CI starts Redis, and a broker test that silently
    # skips proves nothing
    assert _redis_up(), 'no Redis on 127.0.0.1:6379: start it (CI does)'
    from celery.contrib.testing.worker import start_worker
    app = celery_app.configure('redis://127.0.0.1:6379/15')
    queue = f'payt-hub-test-{links_file}'
    app.conf.task_default_queue = queue
    try:
        with start_worker(app, pool='solo', perform_ping_check=False,
                          shutdown_timeout=10, queues=[queue]):
            result = celery_app.sync_link.delay(f'{links_file}-2')
            summary = result.get(timeout=30)
    finally:
        app.conf.task_default_queue = 'celery'
    assert summary['records']['debtors'] == len(snelstart_sim.relaties)
    sink = memory_sink(f'{links_file}-2')
    assert sink.open_items() == snelstart_sim.open_items()
