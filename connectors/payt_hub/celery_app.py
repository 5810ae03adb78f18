"""Celery app: ``sync_link(link_id)`` and a beat schedule syncing all links.

Broker: ``PAYT_BROKER_URL`` (default ``redis://127.0.0.1:6379/0``); results
in ``PAYT_RESULT_BACKEND`` (default: the broker URL). Set PAYT_BROKER_URL
to the empty string, ``memory://``, ``in-process`` or ``eager`` to run
tasks eagerly in the calling process (no broker, no worker).
Beat interval: ``PAYT_SYNC_INTERVAL`` seconds (default 900).

Reliability, as Celery users expect it (docs/CONNECTORS-HUB.md,
"Scheduling"): late acknowledgement (a task whose worker dies is run again),
a Redis visibility timeout longer than any retry countdown and any sync,
soft and hard time limits, one sync per link at a time (a Redis lock, see
shared.py), transient errors retried over hours (retry.TASK_RETRY_DELAYS),
configuration errors never, and one beat tick per interval however many
beats run.
"""
from __future__ import annotations

import logging
import os

from celery import Celery

from celery.exceptions import SoftTimeLimitExceeded

from . import logsafe, shared
from .errors import TransientError
from .retry import TASK_RETRY_DELAYS, sync_settings, task_countdown

log = logging.getLogger(__name__)

DEFAULT_BROKER = 'redis://127.0.0.1:6379/0'
IN_PROCESS = ('', 'memory://', 'in-process', 'inprocess', 'eager')

#: a sync is warned (SoftTimeLimitExceeded, then retried from its cursors)
#: after 55 minutes and killed after an hour; the link lock outlives both
SOFT_TIME_LIMIT = 55 * 60
HARD_TIME_LIMIT = 60 * 60
#: Redis re-delivers an unacknowledged task after this many seconds: it
#: must exceed the longest retry countdown (ETA tasks sit unacknowledged in
#: a worker) and the hard time limit, or a task would run twice
VISIBILITY_TIMEOUT = 3 * 3600
assert VISIBILITY_TIMEOUT > max(TASK_RETRY_DELAYS) * 1.1
assert VISIBILITY_TIMEOUT > HARD_TIME_LIMIT
assert shared.LOCK_TIMEOUT > HARD_TIME_LIMIT

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
        broker_transport_options={'visibility_timeout': VISIBILITY_TIMEOUT},
        result_backend_transport_options={
            'visibility_timeout': VISIBILITY_TIMEOUT},
        task_soft_time_limit=SOFT_TIME_LIMIT,
        task_time_limit=HARD_TIME_LIMIT,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        beat_schedule={'sync-all-links': {
            'task': 'payt_hub.sync_all_links',
            'schedule': float(os.environ.get('PAYT_SYNC_INTERVAL', 900))}},
    )
    shared.use_broker(None if eager else broker_url)
    # forget connections/backends built for a previous configuration
    app._pool = None
    if 'amqp' in app.__dict__:  # cached producer pool of the old broker
        app.amqp._producer_pool = None
    app._local.__dict__.pop('backend', None)
    return app


configure()
logsafe.install()


@app.task(bind=True, name='payt_hub.sync_link',
          max_retries=len(TASK_RETRY_DELAYS))
def sync_link(self, link_id):
    """Sync one link, alone; retried over hours on network errors,
    timeouts, 5xx and 429, never on configuration errors.

    With an ERP configured (PAYT_DATABASE or PAYT_ERP_URL) the link is a
    ``payt.hub.link`` id: settings come from the ERP, batches go to its
    bulk import and every attempt is booked on the link (status,
    auto-pause), exactly as ``payt-hub sync --database``. Otherwise the
    link comes from PAYT_LINKS_FILE. When another worker is syncing the
    same link this task does nothing (that sync covers it)."""
    try:
        with shared.sync_lock(link_id):
            return _sync(link_id)
    except shared.LinkBusy:
        log.info('link %s is being synced by another worker: skipped',
                 link_id)
        return {'link': str(link_id), 'skipped': 'busy'}
    except (TransientError, SoftTimeLimitExceeded) as exc:
        if self.request.retries >= self.max_retries:
            raise
        countdown = task_countdown(self.request.retries,
                                   getattr(exc, 'retry_after', None))
        log.warning('link %s: %s; retry %d in %.0f s', link_id,
                    exc or 'time limit', self.request.retries + 1, countdown)
        raise self.retry(exc=exc, countdown=countdown)


def _sync(link_id):
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
    with link.adapter(**sync_settings({})) as adapter:
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
    has come and that were not tried today (failed ones again after an
    hour), and every PAYT_LINKS_FILE link. A second beat's tick of the same
    interval queues nothing.
    """
    interval = float(os.environ.get('PAYT_SYNC_INTERVAL', 900))
    if not shared.beat_tick(interval):
        log.info('another beat queued this interval already')
        return []
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
