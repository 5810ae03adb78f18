# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Tests run side by side (`make test`: pytest-xdist, one process per worker).

Most of a test's time is spent waiting (servers starting, senders killed
and restarted, the browser), so a few workers on two cores finish in about
half the time. Each worker needs its own test database on PostgreSQL and its
own copy of trytond's database cache: read here, before trytond's test
module reads DB_NAME and DB_CACHE."""
import os
import time

WORKER = os.environ.get('PYTEST_XDIST_WORKER')
OWN_DATABASE = bool(WORKER) and (
    os.environ.get('DB_NAME', ':memory:') != ':memory:'
    or 'postgresql' in os.environ.get('TRYTOND_DATABASE__URI', ''))

if WORKER:
    if OWN_DATABASE:
        os.environ['DB_NAME'] = 'test_%s_%s' % (int(time.time()), WORKER)
    if os.environ.get('DB_CACHE'):
        os.environ['DB_CACHE'] = os.path.join(os.environ['DB_CACHE'], WORKER)
        os.makedirs(os.environ['DB_CACHE'], exist_ok=True)

# The longest files first (after the scenarios, which must come first in
# their process): a worker that starts one last keeps the others waiting.
LONGEST_FIRST = ['scenario_', 'test_module.py', 'test_journeys_browser.py',
    'test_api.py', 'test_server.py', 'test_sender_crash.py',
    'test_browser.py', 'test_webhooks.py']


def _rank(item):
    name = item.path.name
    for rank, prefix in enumerate(LONGEST_FIRST):
        if name.startswith(prefix):
            return rank
    return len(LONGEST_FIRST)


def pytest_collection_modifyitems(session, config, items):
    "Stable: the files keep their order within a rank (xdist needs that)."
    if WORKER:
        items.sort(key=_rank)


def pytest_sessionfinish(session, exitstatus):
    "A worker's own database goes with it: its name is new every run."
    if not OWN_DATABASE:
        return
    from trytond.tests.test_tryton import DB_NAME, drop_db
    try:
        drop_db(DB_NAME)
    except Exception as error:   # left behind, said; the tests' result stands
        print("Test database %s not dropped: %s" % (DB_NAME, error))
