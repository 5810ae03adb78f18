"""A print-and-mail service simulator: one PDF per letter, printed, posted
and delivered or returned, with signed status webhooks.

``POST /v1/letters`` (``Authorization: Bearer <key>``, ``Idempotency-Key``
required) ``{"reference", "recipient": {"name", "street", "postal_code",
"city", "country"}, "pdf": base64, "color", "duplex", "mail_class",
"webhook_url"}`` -> ``201 {"id", "reference", "status": "accepted",
"pages"}``; the same Idempotency-Key again -> ``200`` with the original
(header ``Idempotent-Replayed: true``), the letter is not printed twice.
``GET /v1/letters/<id>`` -> the letter.

Webhooks (POST JSON to the letter's webhook_url): ``{"id", "reference",
"status": "printed"|"posted"|"delivered"|"returned", "reason"}``, signed
like Lob's webhooks (the print-and-mail API with the most used public
clients): header ``X-Signature-Timestamp`` (Unix seconds) and
``X-Signature``, the hex HMAC-SHA256 of ``<timestamp>.<raw body>`` keyed
with the webhook secret. Our first shape signed the body alone, which let a
captured event be replayed at any later time; the public scheme wins.

Control API (POST /_control/<action>): ``fail``, ``reset_failures``,
``letters``, ``return_letter`` {id or reference, reason}, ``state``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import urllib.request
import uuid

from .server import BaseSimulator, json_response, read_body

API_KEY = 'sim-printmail-key'
WEBHOOK_SECRET = 'sim-printmail-webhook-secret'


def sign(secret, body, timestamp=None):
    "The signature headers of a webhook body."
    timestamp = str(int(time.time() if timestamp is None else timestamp))
    signature = hmac.new(secret.encode(), timestamp.encode() + b'.' + body,
                         hashlib.sha256).hexdigest()
    return {'X-Signature-Timestamp': timestamp, 'X-Signature': signature}


class PrintMailSimulator(BaseSimulator):
    def __init__(self, key=API_KEY, secret=WEBHOOK_SECRET, events=True):
        super().__init__()
        self.key = key
        self.secret = secret
        self.events = events
        self.letters: dict[str, dict] = {}
        self.by_key: dict[str, str] = {}
        self.printed: list[str] = []     # ids, once per letter printed
        self.webhook_results: list = []

    def _signed_post(self, url, payload):
        if not url:
            return None
        data = json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method='POST',
            headers=dict(sign(self.secret, data),
                         **{'Content-Type': 'application/json'}))
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                result = response.status
        except Exception as error:
            result = str(error)
        self.webhook_results.append(result)
        return result

    def _event(self, letter, status, reason=None):
        with self.lock:
            letter['status'] = status
        return self._signed_post(letter.get('webhook_url'), {
            'id': letter['id'], 'reference': letter['reference'],
            'status': status, 'reason': reason})

    def _lifecycle(self, letter):
        for status in ('printed', 'posted', 'delivered'):
            self._event(letter, status)

    # -- control ---------------------------------------------------------
    def control_letters(self):
        with self.lock:
            return {'letters': [{k: v for k, v in l.items() if k != 'pdf'}
                                for l in self.letters.values()],
                    'printed': list(self.printed)}

    def control_return_letter(self, id=None, reference=None,
                              reason='Adressee unknown'):
        letter = self.letters.get(id) if id else next(
            (l for l in self.letters.values()
             if l['reference'] == reference), None)
        if letter is None:
            raise KeyError(id or reference)
        return {'status': self._event(letter, 'returned', reason)}

    def control_state(self):
        return {'letters': len(self.letters), 'printed': len(self.printed)}

    # -- API ---------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        method = environ['REQUEST_METHOD']
        if path.startswith('/_control/') and method == 'POST':
            return self.control(environ, start_response,
                                path[len('/_control/'):])
        self.requests.append(f'{method} {path}')
        if environ.get('HTTP_AUTHORIZATION') != 'Bearer %s' % self.key:
            return json_response(start_response, '401 Unauthorized',
                                 {'error': 'invalid API key'})
        failure = self.take_failure(path)
        if self.sleep_if_timeout(failure):
            failure = None
        if failure and failure['mode'] in ('500', '429'):
            status = ('500 Internal Server Error' if failure['mode'] == '500'
                      else '429 Too Many Requests')
            return json_response(start_response, status,
                                 {'error': 'try again later'})
        match = re.fullmatch(r'/v1/letters/([\w-]+)', path)
        if match and method == 'GET':
            letter = self.letters.get(match.group(1))
            if not letter:
                return json_response(start_response, '404 Not Found',
                                     {'error': 'no such letter'})
            return json_response(start_response, '200 OK',
                                 self._public(letter))
        if path == '/v1/letters' and method == 'POST':
            return self._create(environ, start_response)
        return json_response(start_response, '404 Not Found',
                             {'error': 'not found'})

    @staticmethod
    def _public(letter):
        return {k: letter[k] for k in ('id', 'reference', 'status', 'pages')}

    def _create(self, environ, start_response):
        key = environ.get('HTTP_IDEMPOTENCY_KEY')
        if not key:
            return json_response(start_response, '400 Bad Request',
                                 {'error': 'Idempotency-Key is required'})
        try:
            body = json.loads(read_body(environ, limit=50 * 1024 * 1024))
            pdf = base64.b64decode(body['pdf'])
            recipient = body['recipient']
            for field in ('name', 'street', 'city'):
                if not recipient.get(field):
                    raise ValueError('recipient.%s is required' % field)
        except (ValueError, KeyError, TypeError) as error:
            return json_response(start_response, '422 Unprocessable Entity',
                                 {'error': 'invalid letter: %s' % error})
        if not pdf.startswith(b'%PDF'):
            return json_response(start_response, '422 Unprocessable Entity',
                                 {'error': 'pdf is not a PDF'})
        with self.lock:
            existing = self.by_key.get(key)
            if existing:
                return json_response(
                    start_response, '200 OK',
                    self._public(self.letters[existing]),
                    [('Idempotent-Replayed', 'true')])
            letter = {'id': 'ltr_' + uuid.uuid4().hex[:16],
                      'reference': body.get('reference') or key,
                      'recipient': recipient, 'status': 'accepted',
                      'pages': max(1, pdf.count(b'/Type /Page\n')
                                   + pdf.count(b'/Type /Page ')
                                   + pdf.count(b'/Type/Page>')),
                      'webhook_url': body.get('webhook_url'),
                      'pdf': pdf}
            self.letters[letter['id']] = letter
            self.by_key[key] = letter['id']
            self.printed.append(letter['id'])
        # The answer says what was true on creation: the lifecycle's thread
        # may print the letter before the answer is written.
        created = self._public(letter)
        if self.events:
            threading.Thread(target=self._lifecycle, args=(letter,),
                             daemon=True).start()
        return json_response(start_response, '201 Created', created)
