# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Channel providers: one file per provider, behind one small interface
(`Provider.send` takes an `Outgoing`, answers a `Receipt` or raises a
`ProviderError`):

- smtp: email, through Tryton's SMTP setting;
- cm: SMS and robocalls through CM.com;
- printmail: letters through a print-and-mail service (the self-post
  batch is the administration's own: `Communication.letter_batch`).

No database here: the sender prepares a `Job` in one transaction, calls
its provider outside any, and records the answer in another
(`channel.run_sender`)."""
from .base import (
    SECTION, Job, Outgoing, Provider, ProviderError, Receipt, StatusReport,
    callback_url, secret_matches, setting)
from .cm import CMProvider
from .printmail import PrintMailProvider
from .smtp import SMTPProvider

__all__ = ['SECTION', 'Job', 'Outgoing', 'Provider', 'ProviderError',
    'Receipt', 'StatusReport', 'callback_url', 'secret_matches', 'setting',
    'CMProvider', 'PrintMailProvider', 'SMTPProvider', 'PROVIDERS',
    'CHANNEL_PROVIDER', 'PROVIDER_CHANNELS', 'provider_for',
    'call_provider', 'close_providers']

PROVIDERS = {p.name: p for p in [SMTPProvider, CMProvider, PrintMailProvider]}
# Which provider delivers which channel.
CHANNEL_PROVIDER = {'email': 'smtp', 'sms': 'cm', 'call': 'cm',
    'letter': 'printmail'}
# The channels a provider may report on: an SMS report never touches an
# email or a letter.
PROVIDER_CHANNELS = {provider: tuple(c for c, p in CHANNEL_PROVIDER.items()
        if p == provider) for provider in PROVIDERS}


def provider_for(channel):
    return PROVIDERS[CHANNEL_PROVIDER[channel]]()


def call_provider(job, down=None):
    """(Receipt, None) or (None, ProviderError); no database involved.
    `down`: a set of providers that refused in this batch; they are not
    called again (see channel_backoff) and a refusal adds to it."""
    if down is not None and job.provider in down:
        return None, ProviderError("%s is down, retried later" % (
                job.provider), retry=True)
    try:
        return PROVIDERS[job.provider]().send(job.outgoing), None
    except ProviderError as error:
        if down is not None and error.retry:
            down.add(job.provider)
        return None, error


def close_providers():
    "At the end of a sender's work: connections kept open are closed."
    for provider in PROVIDERS.values():
        provider.close()
