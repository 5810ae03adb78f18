# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""CM.com: SMS and robocalls (one product token covers both)."""
import json
import urllib.parse

from .base import (
    Provider, ProviderError, Receipt, StatusReport, callback_url,
    secret_matches, setting)

# CM status codes of a delivery report (statuscode / status.code).
CM_SMS_STATUS = {'0': 'sent', '1': 'failed', '2': 'delivered', '3': 'failed'}
# CM Voice API results of a finished notification call.
CM_CALL_RESULT = {'finished': 'delivered', 'answered': 'delivered',
    'no-answer': 'failed', 'busy': 'failed', 'failed': 'failed',
    'rejected': 'failed', 'hangup': 'delivered'}
CM_VOICES = {'nl': 'nl-NL', 'en': 'en-GB'}


class CMProvider(Provider):
    """CM.com: SMS through the Business Messaging API (POST /v1.0/message),
    robocalls through the Voice API (POST /voiceapi/v2/Notification)."""
    name = 'cm'
    reports = True
    idempotent = False

    def __init__(self, url=None, voice_url=None, token=None):
        self.url = (url or setting('cm_url',
                'https://gw.messaging.cm.com')).rstrip('/')
        self.voice_url = (voice_url or setting('cm_voice_url',
                'https://api.cm.com')).rstrip('/')
        self.token = token or setting('cm_token', '')

    def send(self, message):
        if message.channel == 'sms':
            return self._sms(message)
        if message.channel == 'call':
            return self._call(message)
        raise ProviderError("CM does not send %s" % message.channel)

    def _sms(self, message):
        payload = {'messages': {
                'authentication': {'producttoken': self.token},
                'msg': [{
                        'from': setting('sms_sender', 'Payt'),
                        'to': [{'number': message.to}],
                        'body': {'type': 'auto', 'content': message.text},
                        'reference': message.key,
                        'allowedChannels': ['SMS'],
                        'minimumNumberOfMessageParts': 1,
                        'maximumNumberOfMessageParts': 8,
                        }],
                }}
        status, body = self._post(self.url + '/v1.0/message', payload)
        results = body.get('messages') or [{}]
        result = results[0]
        if status >= 500 or status == 429:
            raise ProviderError("CM: %s %s" % (status, body.get('details')),
                retry=True)
        if status >= 400 or body.get('errorCode') or result.get(
                'messageErrorCode'):
            raise ProviderError("CM refused the SMS: %s" % (
                    result.get('messageDetails') or body.get('details')))
        return Receipt(provider_id=result.get('reference') or message.key,
            state='queued')

    def _call(self, message):
        payload = {
            'callee': message.to,
            'caller': setting('call_caller', '+31850000000'),
            'anonymous': False,
            'prompt': message.text,
            'prompt-type': 'TTS',
            'voice': {'language': CM_VOICES.get(message.language, 'nl-NL'),
                'gender': 'Female', 'number': 1},
            'max-replays': 2,
            'auto-replay': False,
            'callback-url': callback_url('cm', message.key,
                secret='cm_callback_secret'),
            }
        status, body = self._post(self.voice_url + '/voiceapi/v2/Notification',
            payload, headers={'X-CM-PRODUCTTOKEN': self.token})
        if status >= 500 or status == 429:
            raise ProviderError("CM voice: %s" % status, retry=True)
        if status >= 400:
            raise ProviderError("CM refused the call: %s" % (
                    body.get('message') or body.get('details') or status))
        return Receipt(provider_id=body.get('call-id') or message.key,
            state='queued')

    def verify(self, body, headers, query):
        "CM signs nothing: the URL configured at CM carries our secret."
        return secret_matches(query.get('token'), 'cm_callback_secret')

    def parse_callback(self, body, headers, query):
        reports = []
        data = json.loads(body or b'{}') if body else {}
        if query.get('statuscode') is not None:
            # The GET form of a delivery report.
            data = {'messages': {'msg': {
                        'reference': query.get('reference'),
                        'status': {'code': query.get('statuscode'),
                            'errorDescription': query.get(
                                'errordescription')}}}}
        if 'messages' in data:
            messages = data['messages'].get('msg')
            if isinstance(messages, dict):
                messages = [messages]
            for msg in messages or []:
                status = msg.get('status') or {}
                state = CM_SMS_STATUS.get(str(status.get('code')))
                if state:
                    reports.append(StatusReport(state=state,
                            key=msg.get('reference'),
                            error=status.get('errorDescription') or None))
        elif data.get('type'):
            # A Voice API event; only the end of the call settles it.
            kind = data['type'].lower()
            if 'finished' in kind or 'disconnected' in kind:
                result = str(data.get('result', 'finished')).lower()
                state = CM_CALL_RESULT.get(result, 'failed')
                reports.append(StatusReport(state=state,
                        key=query.get('key'),
                        provider_id=data.get('call-id'),
                        error=None if state == 'delivered' else result))
        return reports

    def parse_inbound(self, body, query):
        "An inbound SMS (MO): (sender in E.164, text), for STOP replies."
        data = dict(query)
        if body:
            try:
                data.update(json.loads(body))
            except ValueError:
                data.update(urllib.parse.parse_qsl(body.decode()))
        sender = data.get('from') or data.get('sender') or data.get(
            'originator')
        if isinstance(sender, dict):
            sender = sender.get('number')
        text = data.get('message') or data.get('text') or data.get('body')
        if isinstance(text, dict):
            text = text.get('text') or text.get('content')
        return sender, (text or '').strip()
