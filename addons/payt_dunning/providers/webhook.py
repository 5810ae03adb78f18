# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Webhooks: a signed POST of an event's JSON to a partner's URL
(payt-webhooks.yml). No database: the sender hands plain jobs over and
records the answers (`webhook.Delivery`)."""
import hashlib
import hmac

import requests

TIMEOUT = 10


def signature(secret, body):
    "Hex HMAC-SHA256 of the raw body, keyed with the subscription's secret."
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(job, session):
    """(HTTP status, None) or (None, error); no database involved. Headers
    spelled as the spec does; redirects are not followed (not a 2xx)."""
    try:
        response = session.post(job['url'], data=job['body'],
            timeout=TIMEOUT, allow_redirects=False, headers={
                'Content-Type': 'application/json',
                'User-Agent': 'payt-webhooks/1',
                'X-PAYT-SIGNATURE': signature(job['secret'] or '',
                    job['body']),
                'X-PAYT-DELIVERY': job['uuid'],
                'X-PAYT-ADMINISTRATION-IDENTIFIER': job['administration'],
                })
    except requests.RequestException as error:
        return None, str(error) or repr(error)
    return response.status_code, None
