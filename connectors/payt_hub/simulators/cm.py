"""CM.com simulator: SMS (Business Messaging API) and text-to-speech calls
(Voice API), with delivery reports pushed back like CM does.

Routes, in the shape CM publishes:
``POST /v1.0/message`` ``{"messages": {"authentication": {"producttoken":
...}, "msg": [{"from", "to": [{"number"}], "body": {"type", "content"},
"reference", ...}]}}`` -> ``{"details": "Created 1 message(s)",
"errorCode": 0, "messages": [{"to", "status": "Accepted", "reference",
"parts", "messageDetails", "messageErrorCode"}]}``; a wrong token is
``errorCode 999``. Each accepted SMS gets a status report POSTed (JSON) to
``dlr_url``: ``{"messages": {"msg": {"received", "to", "reference",
"status": {"code": "0"|"2"|"3", "errorCode", "errorDescription"}}}}``.

``POST /voiceapi/v2/Notification`` (header ``X-CM-PRODUCTTOKEN``)
``{"callee", "caller", "prompt", "prompt-type": "TTS", "voice",
"callback-url", ...}`` -> ``{"call-id"}``; events to the callback-url:
``{"type": "notification-started"}`` then ``{"type":
"notification-finished", "result": "answered"|"no-answer"}``.

Like CM, it signs nothing: CM's status reports (JSON POST, configured per
account in CM's Channels app) and the Voice API's events carry no
signature or authentication header. They are authenticated the only way
CM allows: the URL we configure (``dlr_url``, ``inbound_url``, each call's
``callback-url``) carries our secret (``?token=...``), and this simulator,
like CM, posts to it verbatim.

Like CM, it has no idempotency key: a message sent twice arrives twice
(``messages`` counts them). Control API (POST /_control/<action>):
``fail``, ``reset_failures``, ``messages``, ``calls``, ``unreachable``
{number} (reports fail), ``inbound`` {from, text} (an MO reply POSTed to
``inbound_url``), ``state``.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.request
import uuid

from .server import BaseSimulator, json_response, read_body

PRODUCT_TOKEN = '00000000-0000-0000-0000-00000000c0de'


def _post(url, payload):
    if not url:
        return None
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), method='POST',
        headers={'Content-Type': 'application/json'})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except Exception as error:  # a report that does not land is lost
        return str(error)


def _cm_number(number):
    "CM reports numbers as 00<country><number>."
    return '00' + number[1:] if number.startswith('+') else number


class CMSimulator(BaseSimulator):
    def __init__(self, token=PRODUCT_TOKEN, dlr_url=None, inbound_url=None,
                 reports=True):
        super().__init__()
        self.token = token
        self.dlr_url = dlr_url
        self.inbound_url = inbound_url
        self.reports = reports
        self.messages: list[dict] = []
        self.calls: list[dict] = []
        self.unreachable: set[str] = set()
        self.report_results: list = []

    # -- control ---------------------------------------------------------
    def control_messages(self):
        with self.lock:
            return {'messages': list(self.messages)}

    def control_calls(self):
        with self.lock:
            return {'calls': list(self.calls)}

    def control_unreachable(self, number):
        with self.lock:
            self.unreachable.add(number)
        return {'ok': True}

    def control_inbound(self, text, **values):
        sender = values.get('from') or values.get('sender')
        payload = {'from': {'number': sender}, 'to': {'number': 'Payt'},
                   'message': {'text': text}, 'reference': str(uuid.uuid4())}
        return {'status': _post(self.inbound_url, payload)}

    def control_configure(self, dlr_url=None, inbound_url=None,
                          reports=None):
        if dlr_url is not None:
            self.dlr_url = dlr_url
        if inbound_url is not None:
            self.inbound_url = inbound_url
        if reports is not None:
            self.reports = bool(reports)
        return {'ok': True}

    def control_state(self):
        return {'messages': len(self.messages), 'calls': len(self.calls)}

    # -- reports -----------------------------------------------------------
    def _later(self, function, *args):
        thread = threading.Thread(target=function, args=args, daemon=True)
        thread.start()
        return thread

    def _sms_reports(self, message):
        now = dt.datetime.now().isoformat(timespec='seconds')
        failed = message['number'] in self.unreachable
        for code in (['0', '3'] if failed else ['0', '2']):
            report = {'messages': {'msg': {
                'received': now, 'to': _cm_number(message['number']),
                'reference': message['reference'],
                'status': {'code': code,
                           'errorCode': '5' if code == '3' else '',
                           'errorDescription': 'Unknown subscriber'
                           if code == '3' else ''}}}}
            self.report_results.append(_post(self.dlr_url, report))

    def _call_events(self, call):
        answered = call['callee'] not in self.unreachable
        base = {'call-id': call['call-id'], 'callee': call['callee'],
                'caller': call['caller']}
        self.report_results.append(_post(
            call['callback-url'], dict(base, type='notification-started')))
        self.report_results.append(_post(
            call['callback-url'], dict(
                base, type='notification-finished',
                result='answered' if answered else 'no-answer')))

    # -- API -----------------------------------------------------------------
    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        method = environ['REQUEST_METHOD']
        if path.startswith('/_control/') and method == 'POST':
            return self.control(environ, start_response,
                                path[len('/_control/'):])
        self.requests.append(f'{method} {path}')
        failure = self.take_failure(path)
        if self.sleep_if_timeout(failure):
            failure = None
        if failure and failure['mode'] == '500':
            return json_response(start_response, '500 Internal Server Error',
                                 {'details': 'Internal error'})
        if failure and failure['mode'] == '429':
            return json_response(start_response, '429 Too Many Requests',
                                 {'details': 'Too many requests'})
        try:
            body = json.loads(read_body(environ) or b'{}')
        except ValueError:
            return json_response(start_response, '400 Bad Request',
                                 {'details': 'Invalid JSON', 'errorCode': 201})
        if path == '/v1.0/message' and method == 'POST':
            return self._message(body, start_response)
        if path == '/voiceapi/v2/Notification' and method == 'POST':
            token = environ.get('HTTP_X_CM_PRODUCTTOKEN')
            return self._notification(token, body, start_response)
        return json_response(start_response, '404 Not Found',
                             {'details': 'Not found'})

    def _message(self, body, start_response):
        messages = body.get('messages') or {}
        token = (messages.get('authentication') or {}).get('producttoken')
        if token != self.token:
            return json_response(start_response, '401 Unauthorized', {
                'details': 'No account found for the given authentication',
                'errorCode': 999, 'messages': []})
        results, accepted = [], []
        for msg in messages.get('msg') or []:
            content = (msg.get('body') or {}).get('content') or ''
            for to in msg.get('to') or []:
                number = to.get('number') or ''
                valid = number.startswith('+') and number[1:].isdigit() and (
                    8 <= len(number) <= 16)
                result = {'to': _cm_number(number),
                          'status': 'Accepted' if valid else 'Rejected',
                          'reference': msg.get('reference'),
                          'parts': max(1, -(-len(content) // 153)),
                          'messageDetails': None if valid
                          else 'Gsm \'%s\' is not a number.' % number,
                          'messageErrorCode': 0 if valid else 303}
                results.append(result)
                if valid:
                    record = {'number': number, 'from': msg.get('from'),
                              'content': content,
                              'reference': msg.get('reference')}
                    with self.lock:
                        self.messages.append(record)
                    accepted.append(record)
        if not results:
            return json_response(start_response, '400 Bad Request', {
                'details': 'No messages', 'errorCode': 201, 'messages': []})
        error = 0 if all(r['messageErrorCode'] == 0 for r in results) else 1
        if self.reports:
            for record in accepted:
                self._later(self._sms_reports, record)
        return json_response(
            start_response, '200 OK' if not error else '400 Bad Request', {
                'details': 'Created %d message(s)' % len(accepted),
                'errorCode': 0 if not error else 303,
                'messages': results})

    def _notification(self, token, body, start_response):
        if token != self.token:
            return json_response(start_response, '401 Unauthorized',
                                 {'message': 'Invalid product token'})
        callee = body.get('callee') or ''
        if not (callee.startswith('+') and callee[1:].isdigit()):
            return json_response(start_response, '400 Bad Request',
                                 {'message': 'Invalid callee'})
        if body.get('prompt-type') not in ('TTS', 'File'):
            return json_response(start_response, '400 Bad Request',
                                 {'message': 'Invalid prompt-type'})
        call = {'call-id': str(uuid.uuid4()), 'callee': callee,
                'caller': body.get('caller'), 'prompt': body.get('prompt'),
                'voice': body.get('voice'),
                'callback-url': body.get('callback-url')}
        with self.lock:
            self.calls.append(call)
        if self.reports and call['callback-url']:
            self._later(self._call_events, call)
        return json_response(start_response, '200 OK',
                             {'call-id': call['call-id']})
