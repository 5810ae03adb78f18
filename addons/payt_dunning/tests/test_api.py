# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The REST API v1 as a partner package uses it: a real trytond process on
a database of its own (SQLite file or PostgreSQL), a client written from
Payt's published document (paths, parameters and fields of
payt-openapi-v1.json), httpx over HTTP.

Covers: debtors and 1,000 invoices upserted, block and resume, cursor
paging with updated_after, payments, 401/403/422/429, and isolation: a
token of one administration sees and changes nothing of another."""
import datetime
import hashlib
import json
import os
import subprocess
import time
import unittest

import httpx

from . import test_server as _server

TODAY = datetime.date.today()

SETUP = _server.SETUP + '''
Party = pool.get('party.party'); Company = pool.get('company.company')
User = pool.get('res.user'); Group = pool.get('res.group')
ModelData = pool.get('ir.model.data')
Administration = pool.get('payt.administration')
Token = pool.get('payt.api.token')
euro, = Currency.search([('code', '=', 'EUR')])
groups = [ModelData.get_id('payt_dunning', 'group_payt'),
    ModelData.get_id('payt_dunning', 'group_payt_consultant')]
result = {}
for name in ['A', 'B']:
    party, = Party.create([{'name': 'Administration %s BV' % name}])
    company, = Company.create([{'party': party.id, 'currency': euro.id}])
    user, = User.create([{'name': 'Consultant ' + name,
        'login': 'consultant_' + name.lower(),
        'companies': [('add', [company.id])], 'company': company.id,
        'groups': [('add', groups)]}])
    administration, = Administration.create([{'company': company.id}])
    tokens = {}
    for label, scopes in [('all', None), ('read', 'invoices:read'),
            ('revoked', None), ('limited', None)]:
        args = (administration, 'Partner ' + label) + (
            (scopes,) if scopes else ())
        record, tokens[label] = Token.issue(*args, user=user.id)
        if label == 'revoked':
            Token.revoke([record])
    result[name] = {'administration': str(administration.id),
        'tokens': tokens, 'user': user.id}
# A token of A whose user only works for B (e.g. moved to another client):
# the record rules of the web client refuse it A's records.
administration_a = Administration(int(result['A']['administration']))
_, result['A']['tokens']['foreign'] = Token.issue(administration_a,
    'Partner foreign', user=result['B']['user'])
print(json.dumps(result))
'''


def invoice(number, debtor, amount='121.00', open_amount=None, days=10):
    "An invoice as postV1Invoices describes it."
    return {
        'invoice_number': number,
        'debtor_number': debtor,
        'currency_code': 'EUR',
        'invoice_date': (TODAY - datetime.timedelta(days + 30)).isoformat(),
        'due_date': (TODAY - datetime.timedelta(days)).isoformat(),
        'amount_total': amount,
        'amount_open': open_amount or amount,
        'book_amount_total': amount,
        'book_amount_open': open_amount or amount,
        'description': 'Invoice %s' % number,
        }


class ApiTestCase(unittest.TestCase):
    "The REST API v1 over HTTP against a running trytond"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.database = _server.Database()
        out = cls.database.python(SETUP)
        cls.setup = json.loads(out.strip().splitlines()[-1])
        cls.port = _server.free_port()
        cls.server = subprocess.Popen([os.path.join(_server.BIN, 'trytond'),
                '-d', cls.database.name],
            env=dict(cls.database.env,
                TRYTOND_WEB__LISTEN='127.0.0.1:%s' % cls.port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cls.base = 'http://127.0.0.1:%s/%s/api' % (
            cls.port, cls.database.name)
        for _ in range(150):
            try:
                httpx.get(cls.base + '/v1/openapi.json', timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(10)
        cls.database.drop()
        super().tearDownClass()

    def client(self, name='A', token='all'):
        "A partner's client: only the base URL and the token are ours."
        client = httpx.Client(base_url=self.base, timeout=120,
            headers={'Authorization': 'Bearer %s'
                % self.setup[name]['tokens'][token]})
        self.addCleanup(client.close)
        return client

    def call(self, client, method, path, **kwargs):
        "A request, waiting out the rate limit as Payt asks (back off)."
        for attempt in range(20):
            response = client.request(method, path, **kwargs)
            if response.status_code != 429:
                return response
            time.sleep(0.1 * (attempt + 1))
        return response

    def administration(self, name='A'):
        return self.setup[name]['administration']

    def post_debtors(self, client, name, numbers):
        return self.call(client, 'POST', '/v1/debtors', json={
                'administration_id': self.administration(name),
                'debtors': [{'debtor_number': n, 'name': 'Debtor %s' % n,
                        'debtor_identifier': 'ID-' + n, 'is_company': True,
                        'country_code': 'NL', 'language_code': 'nl'}
                    for n in numbers]})

    def all_invoices(self, client, name='A', **params):
        "Every page, following pagination.cursor."
        params = dict(params, administration_id=self.administration(name),
            per_page=100)
        invoices, pages = [], 0
        while True:
            response = self.call(client, 'GET', '/v1/invoices',
                params=params)
            self.assertEqual(response.status_code, 200, response.text)
            body = response.json()
            invoices.extend(body['data'])
            pages += 1
            cursor = body['pagination']['cursor']
            if not cursor:
                return invoices, pages
            params['cursor'] = cursor

    def test_partner_flow(self):
        "Debtors, 1,000 invoices, block and resume, paging, payments"
        client = self.client()
        response = self.post_debtors(client, 'A',
            ['D%03d' % i for i in range(50)])
        self.assertEqual(response.status_code, 201, response.text)
        self.assertEqual(response.json()['count'], 50)
        self.assertEqual(response.json()['errors'], {})

        invoices = [invoice('F%04d' % i, 'D%03d' % (i % 50))
            for i in range(1000)]
        invoices[0]['payments'] = [{'origin_identifier': 'P1',
                'amount': '21.00', 'payment_date': TODAY.isoformat()}]
        invoices[0]['amount_open'] = '100.00'
        response = self.call(client, 'POST', '/v1/invoices', json={
                'administration_id': self.administration(),
                'invoices': invoices})
        self.assertEqual(response.status_code, 201, response.text)
        body = response.json()
        self.assertEqual((body['success'], body['count'], body['errors']),
            (True, 1000, {}))

        stored, pages = self.all_invoices(client)
        ours = [i for i in stored if i['invoice_number'].startswith('F')]
        self.assertEqual(len(ours), 1000)
        self.assertEqual(len({i['id'] for i in stored}), len(stored))
        self.assertEqual(pages, 11)
        first = next(i for i in stored if i['invoice_number'] == 'F0000')
        self.assertEqual((first['total_amount'], first['open_amount']),
            ('121.00', '100.00'))
        self.assertEqual(first['debtor_number'], 'D000')
        self.assertTrue(first['updated_at'].endswith('Z'))

        # Upsert keyed on invoice_number: one changed, one bad, one new.
        time.sleep(1.1)
        since = max(i['updated_at'] for i in stored)
        time.sleep(1.1)
        changed = invoice('F0001', 'D001', open_amount='0.00')
        bad = invoice('F0002', 'D002', amount='12.345')
        new = invoice('F1000', 'D000')
        twice = invoice('F1000', 'D001')
        response = self.call(client, 'POST', '/v1/invoices', json={
                'administration_id': self.administration(),
                'invoices': [changed, bad, new, twice]})
        body = response.json()
        self.assertEqual(body['count'], 2, body)
        self.assertEqual(sorted(body['errors']), ['F0002', 'F1000'])
        self.assertIn('amount', body['errors']['F0002'][0])
        self.assertEqual(body['errors']['F1000'],
            ["appears more than once in the request"])
        recent, _ = self.all_invoices(client, updated_after=since)
        self.assertEqual(sorted(i['invoice_number'] for i in recent),
            ['F0001', 'F1000'])
        paid, _ = self.all_invoices(client, paid='true')
        self.assertEqual([i['invoice_number'] for i in paid], ['F0001'])

        response = self.call(client, 'PATCH', '/v1/invoices/block', json={
                'administration_id': self.administration(),
                'invoice_numbers': ['F0003', 'F0004', 'NOPE']})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json()['count'], 2)
        self.assertEqual(response.json()['errors'], {'not_found': ['NOPE']})
        blocked = self.one_invoice(client, 'F0003')
        self.assertTrue(blocked['paused_by_user'])
        # The spec's body for block and resume is a form.
        response = self.call(client, 'PATCH', '/v1/invoices/resume', data={
                'administration_id': self.administration(),
                'invoice_numbers[]': ['F0003']})
        self.assertEqual(response.status_code, 200, response.text)
        self.assertFalse(self.one_invoice(client, 'F0003')['paused_by_user'])
        self.assertTrue(self.one_invoice(client, 'F0004')['paused_by_user'])

        response = self.call(client, 'GET', '/v1/payments', params={
                'administration_id': self.administration()})
        payments = response.json()['data']
        self.assertEqual([(p['total_amount'], p['invoice_id'])
                for p in payments], [('21.00', first['id'])])

        response = self.call(client, 'GET', '/v1/debtors/D007', params={
                'administration_id': self.administration(),
                'identifier_type': 'debtor_number',
                'fields': json.dumps({'only': ['debtor_number', 'name']})})
        self.assertEqual(response.json(),
            {'debtor_number': 'D007', 'name': 'Debtor D007'})

    def one_invoice(self, client, number):
        response = self.call(client, 'GET', '/v1/invoices/' + number,
            params={'administration_id': self.administration(),
                'identifier_type': 'invoice_number'})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def test_administrations(self):
        "A token lists its own administration only"
        response = self.call(self.client('B'), 'GET', '/v1/administrations')
        self.assertEqual(response.status_code, 200, response.text)
        data = response.json()['data']
        self.assertEqual([(a['id'], a['name'], a['currency_code'])
                for a in data],
            [(self.administration('B'), 'Administration B BV', 'EUR')])

    def test_authentication(self):
        "401 without or with a revoked token, 403 for a missing scope"
        anonymous = httpx.get(self.base + '/v1/invoices',
            params={'administration_id': self.administration()})
        self.assertEqual(anonymous.status_code, 401)
        self.assertEqual(set(anonymous.json()), {'code', 'message'})
        revoked = self.client(token='revoked').get('/v1/administrations')
        self.assertEqual(revoked.status_code, 401)
        reader = self.client(token='read')
        response = self.call(reader, 'POST', '/v1/debtors', json={
                'administration_id': self.administration(),
                'debtors': [{'debtor_number': 'X', 'name': 'X'}]})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(response.json(), {'code': 'forbidden',
                'message': 'Missing permission: debtors:write'})

    def test_record_rules_apply(self):
        "A token acting as a user without access to its company gets 403"
        client = self.client('A', 'foreign')
        response = self.call(client, 'GET', '/v1/invoices', params={
                'administration_id': self.administration('A')})
        self.assertEqual(response.status_code, 403, response.text)
        response = self.call(client, 'PATCH', '/v1/invoices/block', json={
                'administration_id': self.administration('A'),
                'invoice_numbers': ['F0005']})
        self.assertEqual(response.status_code, 403, response.text)

    def test_tokens_stored_hashed(self):
        "Only the SHA-256 of a token is stored"
        token = self.setup['B']['tokens']['all']
        out = self.database.python(
            "Token = pool.get('payt.api.token')\n"
            "print(json.dumps([(t.token_hash, t.prefix) for t in "
            "Token.search([('name', '=', 'Partner all')])]))")
        stored = json.loads(out.strip().splitlines()[-1])
        self.assertIn([hashlib.sha256(token.encode()).hexdigest(),
                token[:6]], stored)
        self.assertNotIn(token, out)

    def test_wizard_shows_token_once(self):
        "A consultant's wizard shows a working token with the chosen scopes"
        out = self.database.python(
            "User = pool.get('res.user')\n"
            "consultant, = User.search([('login', '=', 'consultant_b')])\n"
            "Create = pool.get('payt.api.token.create', type='wizard')\n"
            "with Transaction().set_user(consultant.id), "
            "Transaction().set_context(company=consultant.company.id,"
            " _check_access=True):\n"
            "    session, _, _ = Create.create()\n"
            "    answer = Create.execute(session, {'start': {"
            "'administration': %s, 'name': 'From the wizard',"
            " 'scopes': 'invoices:read bogus:scope'}}, 'create_')\n"
            "print(json.dumps(answer['view']['defaults']))"
            % self.administration('B'))
        shown = json.loads(out.strip().splitlines()[-1])
        self.assertTrue(shown['base_url'].endswith(
                '/%s/api' % self.database.name))
        client = httpx.Client(base_url=self.base, headers={
                'Authorization': 'Bearer ' + shown['token']})
        self.addCleanup(client.close)
        params = {'administration_id': self.administration('B')}
        self.assertEqual(self.call(client, 'GET', '/v1/invoices',
                params=params).status_code, 200)
        self.assertEqual(self.call(client, 'GET', '/v1/debtors',
                params=params).status_code, 403)

    def test_malformed_request_stores_nothing(self):
        "422 for malformed JSON or a body without its list; nothing stored"
        client = self.client('B')
        for content in [b'{"administration_id": ', b'[]',
                json.dumps({'administration_id': self.administration('B'),
                    'invoices': 'F1'}).encode()]:
            response = self.call(client, 'POST', '/v1/invoices',
                content=content,
                headers={'Content-Type': 'application/json'})
            self.assertEqual(response.status_code, 422, content)
            self.assertEqual(set(response.json()), {'code', 'message'})
        response = self.call(client, 'GET', '/v1/invoices', params={
                'administration_id': self.administration('B')})
        self.assertEqual(response.json()['data'], [])

    def test_isolation(self):
        "A token of B neither sees nor changes anything of A"
        a, b = self.client('A'), self.client('B')
        self.post_debtors(a, 'A', ['ISO'])
        self.call(a, 'POST', '/v1/invoices', json={
                'administration_id': self.administration('A'),
                'invoices': [invoice('ISO-1', 'ISO')]})
        item = self.one_invoice(a, 'ISO-1')
        for method, path, kwargs in [
                ('GET', '/v1/invoices', {'params': {
                            'administration_id': self.administration('A')}}),
                ('GET', '/v1/administrations/' + self.administration('A'),
                    {}),
                ('POST', '/v1/debtors', {'json': {
                            'administration_id': self.administration('A'),
                            'debtors': [{'debtor_number': 'ISO',
                                    'name': 'Taken over'}]}}),
                ('PATCH', '/v1/invoices/block', {'json': {
                            'administration_id': self.administration('A'),
                            'invoice_numbers': ['ISO-1']}}),
                ]:
            response = self.call(b, method, path, **kwargs)
            self.assertEqual(response.status_code, 403, path)
        # B's own administration does not reach A's records either.
        response = self.call(b, 'GET', '/v1/invoices/%s' % item['id'],
            params={'administration_id': self.administration('B')})
        self.assertEqual(response.status_code, 404)
        response = self.call(b, 'PATCH', '/v1/invoices/block', json={
                'administration_id': self.administration('B'),
                'invoice_numbers': ['ISO-1']})
        self.assertEqual(response.json()['errors'],
            {'not_found': ['ISO-1']})
        after = self.one_invoice(a, 'ISO-1')
        self.assertFalse(after['paused_by_user'])
        debtor = self.call(a, 'GET', '/v1/debtors/ISO', params={
                'administration_id': self.administration('A'),
                'identifier_type': 'debtor_number'}).json()
        self.assertEqual(debtor['name'], 'Debtor ISO')

    def test_rate_limit(self):
        "A token with 10 requests in this second already gets 429"
        # The requests of other processes are rows in the database: write
        # ten per second for the next minute, as if other servers had
        # answered them, so the next request is the eleventh.
        self.database.python(
            "import time\n"
            "Token = pool.get('payt.api.token')\n"
            "Hit = pool.get('payt.api.hit')\n"
            "token, = Token.search([('name', '=', 'Partner limited'),"
            " ('administration', '=', %s)])\n"
            "now = int(time.time())\n"
            "Hit.create([{'token': token.id, 'second': s}"
            " for s in range(now, now + 60) for _ in range(10)])"
            % self.administration('B'))
        client = self.client('B', 'limited')
        response = client.get('/v1/administrations')
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.json()['code'], 'too_many_requests')
        other = self.client('B', 'all').get('/v1/administrations')
        self.assertEqual(other.status_code, 200)

    def test_openapi_document(self):
        "The served document lists exactly the operations we answer"
        document = httpx.get(self.base + '/v1/openapi.json').json()
        self.assertEqual(document['servers'][0]['url'].split('/')[-2:],
            [self.database.name, 'api'])
        self.assertIn('/v1/invoices/block', document['paths'])
        self.assertNotIn('/v1/payment_plans', document['paths'])
        client = self.client('B')
        for path, operations in document['paths'].items():
            for method in operations:
                url = path.replace('{administration_id}',
                    self.administration('B')).replace('{id}', '0')
                response = self.call(client, method.upper(), url,
                    params={'administration_id': self.administration('B')})
                self.assertNotIn(response.status_code, (404, 405),
                    '%s %s' % (method, path)) if '{id}' not in path else (
                    self.assertEqual(response.status_code, 404, path))
