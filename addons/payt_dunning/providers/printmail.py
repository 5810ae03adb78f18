# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Letters through a print-and-mail service."""
import base64
import hashlib
import hmac
import json
import time

from .base import (
    Provider, ProviderError, Receipt, StatusReport, callback_url, setting)

PRINTMAIL_STATUS = {'accepted': 'queued', 'queued': 'queued',
    'printed': 'queued', 'posted': 'sent', 'delivered': 'delivered',
    'returned': 'returned', 'cancelled': 'failed', 'failed': 'failed'}


class PrintMailProvider(Provider):
    """A print-and-mail service: POST /v1/letters with the PDF and the
    address, an Idempotency-Key header; status events are signed webhooks
    (X-Signature: HMAC-SHA256 of `<X-Signature-Timestamp>.<body>`, the
    scheme of Lob's public clients, so a captured event cannot be replayed
    later)."""
    name = 'printmail'
    reports = True
    idempotent = True

    def __init__(self, url=None, key=None, secret=None):
        self.url = (url or setting('printmail_url',
                'http://127.0.0.1:8093')).rstrip('/')
        self.key = key or setting('printmail_key', '')
        self.secret = secret or setting('printmail_secret', '')

    def send(self, message):
        payload = {
            'reference': message.key,
            'recipient': message.recipient,
            'pdf': base64.b64encode(message.pdf).decode(),
            'color': False, 'duplex': True, 'mail_class': 'standard',
            'webhook_url': callback_url('printmail'),
            }
        status, body = self._post(self.url + '/v1/letters', payload,
            headers={'Authorization': 'Bearer %s' % self.key,
                'Idempotency-Key': message.key})
        if status >= 500 or status == 429:
            raise ProviderError("print and mail: %s" % status, retry=True)
        if status >= 400:
            raise ProviderError("print and mail refused the letter: %s" % (
                    body.get('error') or status))
        return Receipt(provider_id=body['id'],
            state=PRINTMAIL_STATUS.get(body.get('status'), 'queued'))

    @staticmethod
    def signature(secret, timestamp, body):
        return hmac.new(secret.encode(), str(timestamp).encode() + b'.'
            + (body or b''), hashlib.sha256).hexdigest()

    def verify(self, body, headers, query=None):
        "Refused without a secret, a fresh timestamp and its signature."
        timestamp = headers.get('X-Signature-Timestamp') or ''
        given = headers.get('X-Signature') or ''
        if not (self.secret and timestamp.isdigit() and given):
            return False
        tolerance = float(setting('callback_tolerance', 300))
        if abs(time.time() - int(timestamp)) > tolerance:
            return False
        return hmac.compare_digest(given.encode(),
            self.signature(self.secret, timestamp, body).encode())

    def parse_callback(self, body, headers, query):
        data = json.loads(body or b'{}')
        events = data.get('events') or [data]
        reports = []
        for event in events:
            state = PRINTMAIL_STATUS.get(event.get('status'))
            if state:
                reports.append(StatusReport(state=state,
                        key=event.get('reference'),
                        provider_id=event.get('id'),
                        error=event.get('reason')))
        return reports
