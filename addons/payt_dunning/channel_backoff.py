# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""A provider that is down waits: exponential back-off per provider.

When a provider refuses or cannot be reached, the time of the next attempt
is stored (30 s, 60 s, 120 s, ... up to an hour, `backoff_seconds` and
`backoff_max_seconds` in [payt_channels]); until then the sender claims
nothing of its channels, while the other channels go on. The first message
the provider accepts clears it. Without this, a sender asked the refusing
provider again at once, in a loop."""
import datetime

from trytond.model import ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.transaction import without_check_access


class Backoff(ModelSQL, ModelView):
    "Channel Provider Back-off"
    __name__ = 'payt.channel.backoff'
    __string__ = "Channel Provider Back-off"
    provider = fields.Char("Provider", required=True, readonly=True)
    failures = fields.Integer("Failures in a Row", readonly=True)
    next_attempt_at = fields.Timestamp("Next Attempt At", readonly=True)
    error = fields.Char("Last Error", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('provider_unique', Unique(t, t.provider),
                'payt_dunning.msg_channel_backoff_unique'),
            ]

    @classmethod
    @without_check_access
    def waiting(cls):
        "The providers not to be called yet."
        return {b.provider for b in cls.search([
                    ('next_attempt_at', '>', datetime.datetime.now())])}

    @classmethod
    def waiting_channels(cls):
        from .providers import CHANNEL_PROVIDER
        waiting = cls.waiting()
        return [c for c, p in CHANNEL_PROVIDER.items() if p in waiting]

    @classmethod
    def delay(cls, failures):
        from .providers import setting
        base = float(setting('backoff_seconds', 30))
        maximum = float(setting('backoff_max_seconds', 3600))
        return datetime.timedelta(
            seconds=min(base * 2 ** (failures - 1), maximum))

    @classmethod
    @without_check_access
    def failed(cls, provider, error):
        """The provider refused or was unreachable: wait twice as long.
        (Whoever's action called the provider records it: not an access
        matter.)"""
        found = cls.search([('provider', '=', provider)], limit=1)
        backoff = found[0] if found else cls(
            provider=provider, failures=0, next_attempt_at=None)
        if backoff.next_attempt_at and (
                backoff.next_attempt_at > datetime.datetime.now()):
            # Already waiting: one outage, however many messages said so.
            return backoff
        backoff.failures = (backoff.failures or 0) + 1
        backoff.next_attempt_at = (datetime.datetime.now()
            + cls.delay(backoff.failures))
        backoff.error = str(error)[:1000]
        backoff.save()
        return backoff

    @classmethod
    @without_check_access
    def succeeded(cls, provider):
        found = cls.search([('provider', '=', provider)])
        if found:
            cls.delete(found)


class Communication(metaclass=PoolMeta):
    __name__ = 'payt.communication'

    @classmethod
    def _pending_domain(cls, administration=None):
        "Nothing of a channel whose provider is backing off."
        domain = super()._pending_domain(administration)
        waiting = Pool().get('payt.channel.backoff').waiting_channels()
        if waiting:
            domain = domain + [('channel', 'not in', waiting)]
        return domain

    @classmethod
    def record_all(cls, answers):
        """A provider's back-off cleared by what it accepted, started by
        what it refused; in order, once per change (again would do the
        same)."""
        Backoff = Pool().get('payt.channel.backoff')
        last = {}
        for job, receipt, error in answers:
            outcome = 'accepted' if receipt else 'refused' if (
                error is not None and error.retry) else None
            if outcome is None or last.get(job.provider) == outcome:
                continue
            last[job.provider] = outcome
            if receipt:
                Backoff.succeeded(job.provider)
            else:
                Backoff.failed(job.provider, error)
        return super().record_all(answers)
