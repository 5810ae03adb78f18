"""What every worker of the hub shares through Redis.

* **One sync per link at a time**: ``sync_lock(link_id)``, a redis-py
  ``Lock`` with a timeout (a worker killed while holding it frees the link
  when the timeout runs out) that another worker, on any machine, cannot
  take while the first one syncs.
* **One rate limit per vendor key**: ``RateLimit('exact', '60/minute',
  key)`` waits until the vendor allows one more call, counted in Redis by
  the ``limits`` library (moving window) for all workers together. The
  vendor key itself is never a Redis key: a SHA-256 of it is.
* **One beat**: ``beat_tick(interval)`` is true once per interval for all
  beats together, so a second beat started by mistake queues nothing twice.

Redis: ``PAYT_REDIS_URL``, else the broker when it is Redis
(``PAYT_BROKER_URL``). Without Redis (eager mode, a single process) the
same objects work in-process. ``PAYT_REDIS_PREFIX`` (default ``payt-hub``)
prefixes every key (tests use their own).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time

log = logging.getLogger(__name__)

#: a sync holding its link longer than this is presumed dead (seconds);
#: kept above Celery's hard time limit (celery_app.HARD_TIME_LIMIT)
LOCK_TIMEOUT = 2 * 3600

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()
_clients: dict[str, object] = {}


class LinkBusy(Exception):
    "Another worker is syncing this link."


_broker_redis: str | None = None


def use_broker(url: str | None) -> None:
    "Celery's broker, when it is Redis (celery_app.configure says so)."
    global _broker_redis
    _broker_redis = url if url and url.startswith(
        ('redis://', 'rediss://')) else None


def redis_url() -> str | None:
    """PAYT_REDIS_URL; else the Celery broker when it is Redis (set by the
    worker's configuration or PAYT_BROKER_URL); else None: in-process
    (eager mode, the ERP's *Import Now* without Redis)."""
    url = os.environ.get('PAYT_REDIS_URL')
    if url is None:
        url = _broker_redis or os.environ.get('PAYT_BROKER_URL', '')
        if not url.startswith(('redis://', 'rediss://')):
            url = ''
    return url or None


def prefix() -> str:
    return os.environ.get('PAYT_REDIS_PREFIX', 'payt-hub')


def client():
    "A redis client for redis_url(), or None when there is no Redis."
    url = redis_url()
    if not url:
        return None
    if url not in _clients:
        import redis
        _clients[url] = redis.Redis.from_url(url)
    return _clients[url]


def fingerprint(*parts) -> str:
    "A name for a credential that does not reveal it."
    return hashlib.sha256('\0'.join(map(str, parts)).encode()).hexdigest()[:24]


@contextlib.contextmanager
def sync_lock(link_id, timeout=LOCK_TIMEOUT):
    """Hold the link for one sync; raise LinkBusy when another worker does.
    """
    name = f'{prefix()}:sync-lock:{link_id}'
    redis = client()
    if redis is None:
        with _local_guard:
            lock = _local_locks.setdefault(name, threading.Lock())
        if not lock.acquire(blocking=False):
            raise LinkBusy(str(link_id))
        try:
            yield
        finally:
            lock.release()
        return
    lock = redis.lock(name, timeout=timeout, blocking=False)
    if not lock.acquire():
        raise LinkBusy(str(link_id))
    try:
        yield
    finally:
        try:
            lock.release()
        except Exception:  # expired meanwhile: another sync may hold it now
            log.warning('sync lock of link %s had expired', link_id)


def beat_tick(interval: float) -> bool:
    """True for the first caller of this interval, false for the others
    (a second beat): the tick holds a Redis key for 90 % of the interval."""
    redis = client()
    if redis is None:
        return True
    ttl = max(1, int(interval * 0.9))
    return bool(redis.set(f'{prefix()}:beat-tick', '1', nx=True, ex=ttl))


class RateLimit:
    """Calls allowed per vendor key, shared by every worker.

    ``wait()`` blocks until one more call is allowed and counts it. The
    moving window of ``limits`` counts every call of the last minute, so
    two workers together never exceed the vendor's limit."""

    def __init__(self, vendor, rate, *key_parts, sleep=time.sleep):
        from limits import parse, strategies
        from limits.storage import MemoryStorage, RedisStorage
        self.item = parse(rate)
        url = redis_url()
        if url:
            storage = RedisStorage(url, key_prefix=f'{prefix()}:rate')
        else:
            storage = _memory_storage(MemoryStorage)
        self.limiter = strategies.MovingWindowRateLimiter(storage)
        self.identifiers = (vendor, fingerprint(vendor, *key_parts))
        self.sleep = sleep
        self.waited = 0.0

    def wait(self):
        while not self.limiter.hit(self.item, *self.identifiers):
            stats = self.limiter.get_window_stats(self.item,
                                                  *self.identifiers)
            delay = max(0.05, stats.reset_time - time.time())
            log.info('rate limit %s reached, waiting %.1f s',
                     self.item, delay)
            self.waited += delay
            self.sleep(delay)

    def remaining(self) -> int:
        return self.limiter.get_window_stats(self.item,
                                             *self.identifiers).remaining


_memory = None


def _memory_storage(factory):
    global _memory
    if _memory is None:
        _memory = factory()
    return _memory
