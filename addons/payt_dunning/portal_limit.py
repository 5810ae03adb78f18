# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Rate limits of the debtor portal, kept in the database.

Every server process (and every worker thread) sees the same counts, so a
limit holds however many processes serve the portal. An attempt is a row
with a key saying what it counts:

- ``token:<address>``: unknown tokens from one client address. Past the
  limit that address gets 429 for unknown tokens; a valid link still
  opens, so one guesser behind a shared proxy locks out nobody else.
- ``postcode:<link>:<address>``: wrong postcodes for one link from one
  address; past the limit that address gets 429 for that link (the link
  itself is revoked after POSTCODE_REVOKE wrong postcodes from anywhere).
- ``plan:<link>``: payment plan requests of one link (per day).
"""
import datetime

from trytond import config
from trytond.model import Index, ModelSQL, fields

FAILURE_LIMIT = ('portal_max_failures', 10)
FAILURE_WINDOW = ('portal_failure_window', 600)
PLAN_LIMIT = ('portal_plan_requests_per_day', 3)
POSTCODE_LIMIT = ('portal_max_postcode_failures', 5)
# Wrong postcodes from anywhere that revoke the link.
POSTCODE_REVOKE = 10
DAY = 24 * 3600


def setting(option):
    name, default = option
    return config.getint('payt', name, default=default)


class PortalAttempt(ModelSQL):
    "Portal Attempt"
    __name__ = 'payt.portal.attempt'
    __string__ = "Portal Attempt"
    key = fields.Char("Key", required=True, readonly=True)
    at = fields.Timestamp("At", required=True, readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(
            Index(t, (t.key, Index.Equality()), (t.at, Index.Range())))

    @classmethod
    def count(cls, key, window):
        "Attempts under the key within the last `window` seconds."
        since = datetime.datetime.now() - datetime.timedelta(seconds=window)
        return cls.search([('key', '=', key), ('at', '>=', since)],
            count=True)

    @classmethod
    def blocked(cls, key, limit, window):
        return cls.count(key, window) >= limit

    @classmethod
    def record(cls, key, keep=DAY):
        "One more attempt; rows of the key older than `keep` go."
        now = datetime.datetime.now()
        old = cls.search([('key', '=', key),
                ('at', '<', now - datetime.timedelta(seconds=keep))])
        if old:
            cls.delete(old)
        cls.create([{'key': key[:200], 'at': now}])

    @classmethod
    def clear(cls, prefix=''):
        "Forget attempts (all, or those whose key starts with prefix)."
        cls.delete(cls.search([('key', 'like', prefix + '%')]))
