"""A local stand-in for Mollie's v2 payments API, on a real port.

Follows the shapes of https://docs.mollie.com/reference/v2/payments-api:
payments (POST/GET /v2/payments, GET /v2/payments/{id}, refunds), customers
(POST/GET /v2/customers) and their mandates (GET
/v2/customers/{id}/mandates). Amounts are {currency, value} with the value as
a string; statuses open, paid, failed, expired, canceled. Each payment has a
`_links.checkout.href` to a checkout page of the simulator where a person (or
a test) chooses the outcome; the simulator then calls the payment's
webhookUrl with the form field id=tr_xxx, exactly as Mollie does: the
webhook carries no status, the receiver fetches the payment back.

A control API lets tests act as the bank:
  POST /_control/payments/{id}/status     {"status": "paid"}
  POST /_control/payments/{id}/chargeback {"amount": "10.00"}
  POST /_control/payments/{id}/webhook    call the webhook again (replay)
  GET  /_control/webhooks                 the webhook calls made so far
"""
from __future__ import annotations

import datetime
import html
import json
import secrets
import threading
import urllib.parse
import urllib.request
from decimal import Decimal

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

STATUSES = ('open', 'paid', 'failed', 'expired', 'canceled')


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%S+00:00')


def _id(prefix):
    return prefix + secrets.token_hex(5)


def _money(value, currency):
    return {'currency': currency,
        'value': str(Decimal(value).quantize(Decimal('0.01')))}


class MollieSimulator:
    "The simulator: a WSGI app with its state, optionally on a port."

    def __init__(self, api_keys=None):
        # Any test_ or live_ key is accepted unless keys are given.
        self.api_keys = set(api_keys or [])
        self.payments = {}
        self.customers = {}
        self.mandates = {}  # customer id -> {mandate id: mandate}
        self.webhook_calls = []
        self.lock = threading.RLock()
        self.url = None
        self._server = self._thread = None

    # ------------------------------------------------------------- server
    def start(self, host='127.0.0.1', port=0):
        self._server = make_server(host, port, self, threaded=True)
        self.url = 'http://%s:%s' % (host, self._server.server_port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # --------------------------------------------------------------- WSGI
    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except _Error as error:
            response = self._json({
                    'status': error.status, 'title': error.title,
                    'detail': error.detail,
                    '_links': {'documentation': {
                            'href': 'https://docs.mollie.com/overview/'
                            'handling-errors', 'type': 'text/html'}}},
                status=error.status, content_type='application/hal+json')
        return response(environ, start_response)

    def dispatch(self, request):
        parts = [p for p in request.path.split('/') if p]
        method = request.method
        if parts[:1] == ['checkout'] and len(parts) == 2:
            return self._checkout(request, parts[1])
        if parts[:1] == ['_control']:
            return self._control(request, parts[1:])
        if parts[:1] != ['v2']:
            raise _Error(404, 'Not Found', 'Unknown path')
        key = self._authenticate(request)
        parts = parts[1:]
        if parts == ['payments'] and method == 'POST':
            return self._json(self._create_payment(self._body(request),
                    key), status=201)
        if parts == ['payments'] and method == 'GET':
            items = [self._payment_out(p) for p in self.payments.values()
                if p['_key'] == key]
            return self._list('payments', items)
        if len(parts) == 2 and parts[0] == 'payments' and method == 'GET':
            return self._json(self._payment_out(self._payment(parts[1],
                        key)))
        if (len(parts) == 3 and parts[0] == 'payments'
                and parts[2] == 'refunds' and method == 'POST'):
            self._payment(parts[1], key)
            return self._json(self._refund(parts[1], self._body(request)),
                status=201)
        if parts == ['customers'] and method == 'POST':
            return self._json(self._create_customer(self._body(request)),
                status=201)
        if len(parts) == 2 and parts[0] == 'customers' and method == 'GET':
            return self._json(self._customer(parts[1]))
        if (len(parts) == 3 and parts[0] == 'customers'
                and parts[2] == 'mandates' and method == 'GET'):
            self._customer(parts[1])
            return self._list('mandates',
                list(self.mandates.get(parts[1], {}).values()))
        if (len(parts) == 4 and parts[0] == 'customers'
                and parts[2] == 'mandates' and method == 'GET'):
            mandate = self.mandates.get(parts[1], {}).get(parts[3])
            if not mandate:
                raise _Error(404, 'Not Found', 'No mandate exists with '
                    'token %s.' % parts[3])
            return self._json(mandate)
        raise _Error(404, 'Not Found', 'Unknown resource')

    # ------------------------------------------------------------ helpers
    def _authenticate(self, request):
        auth = request.headers.get('Authorization', '')
        key = auth[len('Bearer '):] if auth.startswith('Bearer ') else ''
        if not (key.startswith('test_') or key.startswith('live_')) or (
                self.api_keys and key not in self.api_keys):
            raise _Error(401, 'Unauthorized Request',
                'Missing authentication, or failed to authenticate')
        return key

    @staticmethod
    def _body(request):
        try:
            return json.loads(request.get_data(as_text=True) or '{}')
        except ValueError:
            raise _Error(400, 'Bad Request', 'Invalid JSON')

    @staticmethod
    def _json(data, status=200, content_type='application/hal+json'):
        return Response(json.dumps(data), status=status,
            content_type=content_type)

    def _list(self, name, items):
        return self._json({'count': len(items),
                '_embedded': {name: items},
                '_links': {'self': {'href': self.url, 'type':
                            'application/hal+json'},
                    'previous': None, 'next': None}})

    def _payment(self, payment_id, key=None):
        """The payment; like Mollie, a key sees only its own account's
        payments (another account's is not found)."""
        payment = self.payments.get(payment_id)
        if not payment or (key is not None and payment['_key'] != key):
            raise _Error(404, 'Not Found',
                'No payment exists with token %s.' % payment_id)
        return payment

    def _customer(self, customer_id):
        customer = self.customers.get(customer_id)
        if not customer:
            raise _Error(404, 'Not Found',
                'No customer exists with token %s.' % customer_id)
        return customer

    # ----------------------------------------------------------- payments
    def _create_payment(self, data, key=None):
        amount = data.get('amount') or {}
        try:
            value = Decimal(amount['value'])
            currency = amount['currency']
        except Exception:
            raise _Error(422, 'Unprocessable Entity',
                'The amount is required', )
        if value <= 0 or str(amount['value']).count('.') != 1 or len(
                str(amount['value']).split('.')[1]) != 2:
            raise _Error(422, 'Unprocessable Entity',
                'The amount contains an invalid value')
        if not data.get('description'):
            raise _Error(422, 'Unprocessable Entity',
                'The description is invalid')
        sequence = data.get('sequenceType', 'oneoff')
        if sequence == 'first' and data.get('customerId') not in (
                self.customers):
            raise _Error(422, 'Unprocessable Entity',
                'A first payment needs a customer')
        payment_id = _id('tr_')
        with self.lock:
            self.payments[payment_id] = {
                'resource': 'payment', 'id': payment_id, 'mode': 'test',
                'createdAt': _now(), 'status': 'open',
                'isCancelable': False,
                'amount': _money(value, currency),
                'amountRefunded': _money(0, currency),
                'amountRemaining': _money(value, currency),
                'amountChargedBack': None,
                'description': data['description'],
                'method': data.get('method'),
                'metadata': data.get('metadata'),
                'redirectUrl': data.get('redirectUrl'),
                'webhookUrl': data.get('webhookUrl'),
                'locale': data.get('locale'),
                'sequenceType': sequence,
                'customerId': data.get('customerId'),
                'mandateId': None,
                'profileId': 'pfl_simulator',
                '_key': key,
                'expiresAt': _now(),
                }
        return self._payment_out(self.payments[payment_id])

    def _payment_out(self, payment):
        out = dict(payment)
        out.pop('_key', None)
        out['_links'] = {
            'self': {'href': '%s/v2/payments/%s' % (self.url, payment['id']),
                'type': 'application/hal+json'},
            'dashboard': {'href': '%s/dashboard/%s' % (
                        self.url, payment['id']), 'type': 'text/html'},
            }
        if payment['status'] == 'open':
            out['_links']['checkout'] = {
                'href': '%s/checkout/%s' % (self.url, payment['id']),
                'type': 'text/html'}
        if out.get('amountChargedBack') is None:
            out.pop('amountChargedBack')
        return out

    def set_status(self, payment_id, status, call_webhook=True):
        if status not in STATUSES:
            raise _Error(422, 'Unprocessable Entity', 'Unknown status')
        with self.lock:
            payment = self._payment(payment_id)
            if payment['status'] != 'open':
                raise _Error(422, 'Unprocessable Entity',
                    'The payment is no longer open')
            payment['status'] = status
            payment[{'paid': 'paidAt', 'failed': 'failedAt',
                    'expired': 'expiredAt', 'canceled': 'canceledAt',
                    'open': 'createdAt'}[status]] = _now()
            if status == 'paid':
                payment['method'] = payment.get('method') or 'ideal'
                payment['details'] = {
                    'consumerName': 'T. TEST',
                    'consumerAccount': 'NL91ABNA0417164300',
                    'consumerBic': 'ABNANL2A'}
                if payment['sequenceType'] == 'first':
                    mandate_id = _id('mdt_')
                    customer = payment['customerId']
                    self.mandates.setdefault(customer, {})[mandate_id] = {
                        'resource': 'mandate', 'id': mandate_id,
                        'mode': 'test', 'status': 'valid',
                        'method': 'directdebit',
                        'details': {'consumerName': 'T. TEST',
                            'consumerAccount': 'NL91ABNA0417164300',
                            'consumerBic': 'ABNANL2A'},
                        'mandateReference': 'PAYT-%s' % mandate_id[4:],
                        'signatureDate': datetime.date.today().isoformat(),
                        'createdAt': _now()}
                    payment['mandateId'] = mandate_id
            else:
                payment['amountRemaining'] = _money(0,
                    payment['amount']['currency'])
        if call_webhook:
            self.call_webhook(payment_id)
        return payment

    def _refund(self, payment_id, data):
        with self.lock:
            payment = self._payment(payment_id)
            if payment['status'] != 'paid':
                raise _Error(422, 'Unprocessable Entity',
                    'The payment cannot be refunded')
            currency = payment['amount']['currency']
            value = Decimal((data.get('amount') or payment['amount'])[
                    'value'])
            refunded = Decimal(payment['amountRefunded']['value'])
            remaining = Decimal(payment['amount']['value']) - refunded - (
                Decimal((payment.get('amountChargedBack') or {}).get(
                        'value', '0')))
            if value <= 0 or value > remaining:
                raise _Error(422, 'Unprocessable Entity',
                    'The refund amount is more than the remaining amount')
            payment['amountRefunded'] = _money(refunded + value, currency)
            payment['amountRemaining'] = _money(remaining - value, currency)
            refund = {'resource': 'refund', 'id': _id('re_'),
                'amount': _money(value, currency), 'status': 'pending',
                'paymentId': payment_id, 'createdAt': _now(),
                'description': data.get('description', '')}
        self.call_webhook(payment_id)
        return refund

    def chargeback(self, payment_id, value):
        with self.lock:
            payment = self._payment(payment_id)
            currency = payment['amount']['currency']
            before = Decimal((payment.get('amountChargedBack') or {}).get(
                    'value', '0'))
            payment['amountChargedBack'] = _money(before + Decimal(value),
                currency)
        self.call_webhook(payment_id)
        return payment

    def call_webhook(self, payment_id):
        "POST id=tr_xxx to the webhookUrl; the receiver fetches the rest."
        payment = self._payment(payment_id)
        url = payment.get('webhookUrl')
        if not url:
            return None
        data = urllib.parse.urlencode({'id': payment_id}).encode()
        request = urllib.request.Request(url, data=data, headers={
                'Content-Type': 'application/x-www-form-urlencoded',
                'User-Agent': 'Mollie.nl HTTP client/1.0'})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError as error:
            status = str(error)
        self.webhook_calls.append({'id': payment_id, 'url': url,
                'status': status})
        return status

    # ----------------------------------------------------------- customers
    def _create_customer(self, data):
        customer_id = _id('cst_')
        with self.lock:
            self.customers[customer_id] = {
                'resource': 'customer', 'id': customer_id, 'mode': 'test',
                'name': data.get('name'), 'email': data.get('email'),
                'locale': data.get('locale'),
                'metadata': data.get('metadata'), 'createdAt': _now(),
                '_links': {'self': {'href': '%s/v2/customers/%s' % (
                                self.url, customer_id),
                        'type': 'application/hal+json'}}}
        return self.customers[customer_id]

    # ------------------------------------------------------------ checkout
    def _checkout(self, request, payment_id):
        payment = self.payments.get(payment_id)
        if not payment:
            return Response('Unknown payment', status=404)
        if request.method == 'POST':
            status = request.form.get('status', 'paid')
            if payment['status'] == 'open':
                self.set_status(payment_id, status)
            target = payment.get('redirectUrl') or '%s/checkout/%s' % (
                self.url, payment_id)
            return Response('', status=303, headers={'Location': target})
        esc = html.escape
        buttons = ''.join(
            '<button name="status" value="%s">%s</button> ' % (s, s)
            for s in STATUSES[1:]) if payment['status'] == 'open' else ''
        body = ('<!doctype html><html><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width">'
            '<title>Mollie simulator checkout</title></head><body>'
            '<h1>Mollie simulator</h1><p>%s</p><p>%s %s</p>'
            '<p>Status: <strong id="status">%s</strong></p>'
            '<form method="post">%s</form></body></html>') % (
            esc(payment['description']), esc(payment['amount']['currency']),
            esc(payment['amount']['value']), esc(payment['status']), buttons)
        return Response(body, content_type='text/html; charset=utf-8')

    # -------------------------------------------------------------- control
    def _control(self, request, parts):
        if parts == ['webhooks']:
            return self._json(self.webhook_calls)
        if len(parts) == 3 and parts[0] == 'payments':
            data = self._body(request)
            if parts[2] == 'status':
                payment = self.set_status(parts[1], data.get('status'))
            elif parts[2] == 'chargeback':
                payment = self.chargeback(parts[1], data.get('amount'))
            elif parts[2] == 'webhook':
                self.call_webhook(parts[1])
                payment = self._payment(parts[1])
            else:
                raise _Error(404, 'Not Found', 'Unknown control')
            return self._json(self._payment_out(payment))
        raise _Error(404, 'Not Found', 'Unknown control')


class _Error(Exception):
    def __init__(self, status, title, detail):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
