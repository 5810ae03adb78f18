"""Celery app: ``sync_link(link_id)`` and a beat schedule syncing all links.

Broker: ``PAYT_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``); results
in ``PAYT_RESULT_BACKEND`` (default: the broker URL). Set PAYT_BROKER_URL
to the empty string, ``memory://``, ``in-process`` or ``eager`` to run
tasks eagerly in the calling process (no broker, no worker).
Beat interval: ``PAYT_SYNC_INTERVAL`` seconds (default 900).
"""
from __future__ import annotations

import logging
import os

from celery import Celery

from . import logsafe
from .errors import TransientError

log = logging.getLogger(__name__)

DEFAULT_BROKER = 'redis://127.0.0.1:6379/0'
IN_PROCESS = ('', 'memory://', 'in-process', 'inprocess', 'eager')

app = Celery('payt_hub')


def configure(broker_url=None, result_backend=None):
    """(Re)apply the configuration; reads the environment by default."""
    if broker_url is None:
        broker_url = os.environ.get('PAYT_BROKER_URL', DEFAULT_BROKER)
    eager = broker_url.strip() in IN_PROCESS
    if result_backend is None:
        result_backend = os.environ.get('PAYT_RESULT_BACKEND') or (
            None if eager else broker_url)
    app.conf.update(
        broker_url='memory://' if eager else broker_url,
        result_backend=result_backend,
        task_always_eager=eager,
        # False so that eager autoretry works; .get() still raises
        task_eager_propagates=False,
        task_serializer='json', result_serializer='json',
        accept_content=['json'],
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        beat_schedule={'sync-all-links': {
            'task': 'payt_hub.sync_all_links',
            'schedule': float(os.environ.get('PAYT_SYNC_INTERVAL', 900))}},
    )
    # forget connections/backends built for a previous configuration
    app._pool = None
    if 'amqp' in app.__dict__:  # cached producer pool of the old broker
        app.amqp._producer_pool = None
    app._local.__dict__.pop('backend', None)
    return app


configure()
logsafe.install()


@app.task(bind=True, name='payt_hub.sync_link',
          autoretry_for=(TransientError,), retry_backoff=True,
          retry_backoff_max=600, retry_jitter=True,
          retry_kwargs={'max_retries': 5})
def sync_link(self, link_id):
    """Sync one link; retried with backoff on network errors, 5xx, 429.

    With an ERP configured (PAYT_DATABASE or PAYT_ERP_URL) the link is a
    ``payt.hub.link`` id: settings come from the ERP, batches go to its
    bulk import and every attempt is booked on the link (status,
    auto-pause), exactly as ``payt-hub sync --database``. Otherwise the
    link comes from PAYT_LINKS_FILE."""
    from .links import get_link
    from .sync import run_sync
    if erp_link_id(link_id) is not None:
        from . import erp
        cfg = erp.connect()
        wanted = erp_link_id(link_id)
        for link in erp.links_to_sync(cfg):
            if link['id'] == wanted:
                return erp.sync_link(cfg, link, progress=False,
                                     raise_transient=True)
        from .errors import LinkError
        raise LinkError(f'link {link_id} is not active in the ERP',
                        'rejected')
    link = get_link(link_id)
    with link.adapter() as adapter:
        result = run_sync(adapter, link.sink(), progress=False)
    return {'link': str(link_id), 'pages': result.pages,
            'records': result.records, 'summary': result.summary}


def erp_link_id(link_id):
    """The payt.hub.link id when link_id names an ERP link (an integer, or
    'erp:<n>') and an ERP is configured; None for PAYT_LINKS_FILE links."""
    from .erp import erp_configured
    text = str(link_id)
    if text.startswith('erp:'):
        return int(text[4:])
    if erp_configured() and text.isdigit():
        from .links import load_links
        if text not in load_links():
            return int(text)
    return None


@app.task(name='payt_hub.sync_all_links')
def sync_all_links():
    """Queue a sync of every link that is due: ERP links whose sync hour
    has come and that were not tried today, and every PAYT_LINKS_FILE link.
    """
    from .links import load_links
    ids = sorted(load_links())
    from .erp import erp_configured
    if erp_configured():
        from . import erp
        ids += [f'erp:{link["id"]}' for link in
                erp.links_to_sync(erp.connect(), due=True)]
    for link_id in ids:
        sync_link.delay(link_id)
    return ids
