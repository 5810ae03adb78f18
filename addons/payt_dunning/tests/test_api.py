# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The REST API v1 as a partner package uses it: a real trytond process on
a database of its own (SQLite file or PostgreSQL), a client written from
Payt's published document (paths, parameters and fields of
payt-openapi-v1.json), httpx over HTTP.

Covers: debtors and 1,000 invoices upserted, block and resume, cursor
paging with updated_after, payments, 401/403/422/429, and isolation: a
token of one administration sees and changes nothing of another. Then
(administration C) invoice updates, deleted invoices, payment plans
(created, proposed and approved, rejected, deactivated), messages (sent,
marked read and unread), credit cases and PSP transactions, each also
refused to another administration's token."""
import datetime
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
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
for name in ['A', 'B', 'C']:
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


class ResourceTests:
    """Invoice updates, deleted invoices, plans, messages, cases and PSP
    transactions, in administration C (mixed into ApiTestCase: one server)"""

    def c(self):
        return self.client('C')

    def seed(self, debtor, numbers, **kwargs):
        "A debtor of C with invoices, through the API."
        client = self.c()
        self.post_debtors(client, 'C', [debtor])
        response = self.call(client, 'POST', '/v1/invoices', json={
                'administration_id': self.administration('C'),
                'invoices': [invoice(n, debtor, **kwargs) for n in numbers]})
        self.assertEqual(response.json()['count'], len(numbers),
            response.text)
        return {n: self.invoice_of(n)['id'] for n in numbers}

    def invoice_of(self, number, name='C'):
        response = self.call(self.client(name), 'GET', '/v1/invoices/'
            + number, params={'administration_id': self.administration(name),
                'identifier_type': 'invoice_number'})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def as_admin(self, code):
        "Python in the database, as the accounting package or portal would."
        out = self.database.python(
            "Administration = pool.get('payt.administration')\n"
            "Item = pool.get('payt.item')\n"
            "administration = Administration(%s)\n%s"
            % (self.administration('C'), code))
        return json.loads(out.strip().splitlines()[-1]) if out.strip() else (
            None)

    def params(self, **kwargs):
        return dict(kwargs, administration_id=self.administration('C'))

    def test_patch_invoices(self):
        "PATCH updates the fields sent, per record; unknown numbers fail"
        self.seed('PA', ['PA-1', 'PA-2'])
        response = self.call(self.c(), 'PATCH', '/v1/invoices', json={
                'administration_id': self.administration('C'),
                'invoices': [
                    {'invoice_number': 'PA-1', 'amount_open': '50.00'},
                    {'invoice_number': 'PA-2', 'due_date': 'tomorrow'},
                    {'invoice_number': 'NOPE', 'amount_open': '1.00'}]})
        self.assertEqual(response.status_code, 200, response.text)
        body = response.json()
        self.assertEqual(body['count'], 1)
        self.assertEqual(sorted(body['errors']), ['NOPE', 'PA-2'])
        updated = self.invoice_of('PA-1')
        self.assertEqual((updated['open_amount'], updated['total_amount'],
                updated['description']), ('50.00', '121.00', 'Invoice PA-1'))
        self.assertEqual(self.invoice_of('PA-2')['due_date'],
            invoice('PA-2', 'PA')['due_date'])
        self.assertIsNone(self.call(self.c(), 'GET', '/v1/invoices/NOPE',
                params=self.params(identifier_type='invoice_number')
                ).json().get('id'))

        # Malformed: nothing processed.
        for body in [{'administration_id': self.administration('C'),
                    'invoices': {'invoice_number': 'PA-1'}},
                {'administration_id': self.administration('C'),
                    'invoices': [{'invoice_number': 'PA-1'}] * 1001}]:
            response = self.call(self.c(), 'PATCH', '/v1/invoices',
                json=body)
            self.assertEqual(response.status_code, 422, response.text)
        # Another administration's token changes nothing of C.
        response = self.call(self.client('A'), 'PATCH', '/v1/invoices',
            json={'administration_id': self.administration('C'),
                'invoices': [{'invoice_number': 'PA-1',
                        'amount_open': '0.00'}]})
        self.assertEqual(response.status_code, 403)
        response = self.call(self.client('A'), 'PATCH', '/v1/invoices',
            json={'administration_id': self.administration('A'),
                'invoices': [{'invoice_number': 'PA-1',
                        'amount_open': '0.00'}]})
        self.assertEqual(list(response.json()['errors']), ['PA-1'])
        self.assertEqual(self.invoice_of('PA-1')['open_amount'], '50.00')

    def test_patch_open_amount_records_payment(self):
        "A changed open amount without payments is a payment, as in Payt"
        self.seed('PY', ['PY-1', 'PY-2'])

        def payments(number):
            response = self.call(self.c(), 'GET', '/v1/payments',
                params=self.params(invoice_numbers=number))
            self.assertEqual(response.status_code, 200, response.text)
            return [p['total_amount'] for p in response.json()['data']]

        def patch(*invoices):
            response = self.call(self.c(), 'PATCH', '/v1/invoices', json={
                    'administration_id': self.administration('C'),
                    'invoices': list(invoices)})
            self.assertEqual(response.status_code, 200, response.text)
            self.assertEqual(response.json()['errors'], {})

        patch({'invoice_number': 'PY-1', 'amount_open': '50.00'})
        self.assertEqual(payments('PY-1'), ['71.00'])
        # Sent again: the open amount did not change, no second payment.
        patch({'invoice_number': 'PY-1', 'amount_open': '50.00'})
        self.assertEqual(payments('PY-1'), ['71.00'])
        # A credit lowers the total with the open amount: nothing paid.
        patch({'invoice_number': 'PY-1', 'amount_total': '100.00',
                'book_amount_total': '100.00', 'amount_open': '29.00'})
        self.assertEqual(payments('PY-1'), ['71.00'])
        # The payments sent are the payments: none is made up.
        patch({'invoice_number': 'PY-2', 'amount_open': '21.00',
                'payments': [{'origin_identifier': 'BANK-7',
                        'amount': '100.00'}]})
        self.assertEqual(payments('PY-2'), ['100.00'])
        # A reopened invoice: the payment is reversed.
        patch({'invoice_number': 'PY-2', 'amount_open': '121.00'})
        self.assertEqual(sorted(payments('PY-2')), ['-100.00', '100.00'])
        self.assertEqual(self.invoice_of('PY-2')['open_amount'], '121.00')

    def test_deleted_invoices(self):
        "An invoice the package no longer has is listed as deleted"
        before = datetime.datetime.utcnow().isoformat() + 'Z'
        ids = self.seed('DE', ['DE-1', 'DE-2'])
        # As the hub's sync: the importer locks the administration first
        # (what the server's transaction retry would do).
        self.as_admin(
            "with Transaction().new_transaction(_lock_records={"
            "'payt_administration': [administration.id]}) as t:\n"
            "    Administration.import_batch(administration.id,"
            " {'closed_items': ['DE-1']})\n"
            "    t.commit()")
        response = self.call(self.c(), 'GET', '/v1/invoices/deleted',
            params=self.params(deleted_after=before))
        self.assertEqual(response.status_code, 200, response.text)
        data = response.json()['data']
        self.assertEqual([(d['id'], d['invoice_number']) for d in data],
            [(ids['DE-1'], 'DE-1')])
        self.assertTrue(data[0]['deleted_at'].endswith('Z'))
        self.assertEqual(self.call(self.c(), 'GET', '/v1/invoices/deleted',
                params=self.params(deleted_after=data[0]['deleted_at'])
                ).json()['data'], [])
        self.assertEqual(self.call(self.c(), 'GET', '/v1/invoices/deleted',
                params=self.params()).status_code, 422)
        response = self.call(self.client('A'), 'GET',
            '/v1/invoices/deleted', params={'deleted_after': before,
                'administration_id': self.administration('A')})
        self.assertEqual(response.json()['data'], [])

    def propose(self, numbers, note):
        "A plan the debtor proposes in the portal; its id."
        return str(self.as_admin(
            "Plan = pool.get('payt.plan')\n"
            "items = Item.search([('external_id', 'in', %r)])\n"
            "plan = Plan.create_for(items[0].debtor, items, [], 1,"
            " Plan.earliest_start_date(3), requested=True,"
            " request_note=%r)\n"
            "print(plan.id)" % (numbers, note)))

    def test_payment_plans(self):
        "Create a plan, approve or reject a proposed one, deactivate"
        client = self.c()
        self.seed('PL', ['PL-1', 'PL-2', 'PL-3', 'PL-4'])
        due = TODAY + datetime.timedelta(days=10)
        terms = [{'amount': 121.0, 'due_date': due.isoformat()},
            {'amount': 121.0, 'due_date': (due + datetime.timedelta(30)
                    ).isoformat()}]
        response = self.call(client, 'POST', '/v1/payment_plans', json={
                'administration_id': self.administration('C'),
                'invoice_numbers': ['PL-1', 'PL-2'], 'terms': terms})
        self.assertEqual(response.status_code, 201, response.text)
        plan = response.json()
        self.assertTrue(plan['active'])
        self.assertTrue(plan['approved_at'])
        self.assertEqual([(t['total_amount'], t['due_date'])
                for t in plan['payment_terms']],
            [('121.00', t['due_date']) for t in terms])
        self.assertTrue(self.invoice_of('PL-1')['paused_by_user'])

        # Terms that do not add up, an unknown invoice, no terms: 422.
        for body in [{'invoice_numbers': ['PL-3'], 'terms': terms},
                {'invoice_numbers': ['NOPE'], 'terms': terms[:1]},
                {'invoice_numbers': ['PL-3']}]:
            response = self.call(client, 'POST', '/v1/payment_plans',
                json=dict(body, administration_id=self.administration('C')))
            self.assertEqual(response.status_code, 422, body)
        self.assertFalse(self.invoice_of('PL-3')['paused_by_user'])

        proposed = self.propose(['PL-3'], 'Twee termijnen graag')
        rejected = self.propose(['PL-4'], 'Later')
        listed = self.call(client, 'GET', '/v1/payment_plans',
            params=self.params(debtor_numbers='PL')).json()['data']
        self.assertEqual(sorted(p['id'] for p in listed),
            sorted([plan['id'], proposed, rejected]))
        shown = self.call(client, 'GET', '/v1/payment_plans/' + proposed,
            params=self.params()).json()
        self.assertEqual((shown['active'], shown['reason']),
            (False, 'Twee termijnen graag'))
        self.assertTrue(shown['proposed_at'])

        # Another administration's token can neither see nor approve it.
        other = self.client('A')
        for params in [{'administration_id': self.administration('C')},
                {'administration_id': self.administration('A')}]:
            response = self.call(other, 'PATCH',
                '/v1/payment_plans/%s/approve' % proposed, data=params)
            self.assertIn(response.status_code, (403, 404))
            response = self.call(other, 'GET',
                '/v1/payment_plans/' + proposed, params=params)
            self.assertIn(response.status_code, (403, 404))

        response = self.call(client, 'PATCH',
            '/v1/payment_plans/%s/approve' % proposed,
            data=self.params())
        self.assertEqual(response.status_code, 200, response.text)
        self.assertTrue(response.json()['active'])
        self.assertTrue(self.invoice_of('PL-3')['paused_by_user'])
        response = self.call(client, 'PATCH',
            '/v1/payment_plans/%s/approve' % proposed, data=self.params())
        self.assertEqual(response.status_code, 422)

        response = self.call(client, 'PATCH',
            '/v1/payment_plans/%s/reject' % rejected, data=self.params())
        self.assertEqual(response.status_code, 200, response.text)
        body = response.json()
        self.assertFalse(body['active'])
        self.assertTrue(body['rejected_at'])
        self.assertEqual(body['rejected_by_user']['name'], 'Consultant C')

        response = self.call(client, 'PATCH',
            '/v1/payment_plans/%s/deactivate' % plan['id'],
            json=self.params())
        self.assertEqual(response.status_code, 200, response.text)
        self.assertFalse(response.json()['active'])
        self.assertTrue(response.json()['deactivated_at'])
        self.assertFalse(self.invoice_of('PL-1')['paused_by_user'])

    def test_messages(self):
        "A message to a debtor about an invoice, listed and fetched"
        client = self.c()
        ids = self.seed('MS', ['MS-1'])
        response = self.call(client, 'POST', '/v1/messages', json={
                'administration_id': self.administration('C'),
                'invoice_number': 'MS-1',
                'message': {'subject': 'Uw factuur',
                    'body': 'Wij zien uw betaling graag tegemoet.'}})
        self.assertEqual(response.status_code, 200, response.text)
        message = response.json()
        self.assertEqual((message['sender_type'], message['invoice_id']),
            ('creditor', ids['MS-1']))
        self.assertIn('Wij zien uw betaling', message['content'])
        listed = self.call(client, 'GET', '/v1/messages',
            params=self.params(invoice_ids=ids['MS-1'])).json()['data']
        self.assertEqual([m['id'] for m in listed], [message['id']])
        shown = self.call(client, 'GET', '/v1/messages/' + message['id'],
            params=self.params(fields=json.dumps({'only': ['id',
                            'debtor_id']}))).json()
        self.assertEqual(shown, {'id': message['id'],
                'debtor_id': message['debtor_id']})
        for body, status in [
                ({'invoice_number': 'MS-1', 'message': {'body': 'x'}}, 422),
                ({'message': {'subject': 's', 'body': 'x'}}, 422),
                ({'invoice_number': 'NOPE',
                        'message': {'subject': 's', 'body': 'x'}}, 404)]:
            response = self.call(client, 'POST', '/v1/messages',
                json=dict(body, administration_id=self.administration('C')))
            self.assertEqual(response.status_code, status, body)
        # Another administration's token: refused, and none of C's shown.
        other = self.client('A')
        response = self.call(other, 'POST', '/v1/messages', json={
                'administration_id': self.administration('A'),
                'invoice_number': 'MS-1',
                'message': {'subject': 's', 'body': 'x'}})
        self.assertEqual(response.status_code, 404)
        response = self.call(other, 'GET', '/v1/messages/' + message['id'],
            params={'administration_id': self.administration('A')})
        self.assertEqual(response.status_code, 404)
        self.assertEqual(len(self.call(client, 'GET', '/v1/messages',
                    params=self.params()).json()['data']), 1)

    def debtor_writes(self, number, name='C'):
        "A message of the debtor about the invoice, from the portal; its id."
        out = self.database.python(
            "Item = pool.get('payt.item')\n"
            "Message = pool.get('payt.message')\n"
            "item, = Item.search([('administration', '=', %s),"
            " ('external_id', '=', %r)])\n"
            "message, = Message.create([{'administration':"
            " item.administration.id, 'debtor': item.debtor.id,"
            " 'item': item.id, 'direction': 'in',"
            " 'body': 'Ik heb al betaald.'}])\n"
            "print(message.id)" % (self.administration(name), number))
        return out.strip().splitlines()[-1]

    def unread_attentions(self, number):
        return self.as_admin(
            "Attention = pool.get('payt.attention')\n"
            "print(Attention.search([('item.external_id', '=', %r),"
            " ('reason', '=', 'unread_message'), ('state', '=', 'open')],"
            " count=True))" % number)

    def message(self, id_, name='C'):
        response = self.call(self.client(name), 'GET', '/v1/messages/'
            + id_, params={'administration_id': self.administration(name)})
        self.assertEqual(response.status_code, 200, response.text)
        return response.json()

    def test_patch_messages(self):
        "The debtor's messages marked read and unread, per record"
        client = self.c()
        self.seed('MR', ['MR-1'])
        incoming = self.debtor_writes('MR-1')
        sent = self.call(client, 'POST', '/v1/messages', json={
                'administration_id': self.administration('C'),
                'invoice_number': 'MR-1',
                'message': {'subject': 'Dank', 'body': 'Wij kijken.'}}
            ).json()['id']
        other = self.client('A')
        self.post_debtors(other, 'A', ['MRA'])
        self.call(other, 'POST', '/v1/invoices', json={
                'administration_id': self.administration('A'),
                'invoices': [invoice('MRA-1', 'MRA')]})
        theirs = self.debtor_writes('MRA-1', 'A')
        self.assertEqual(self.unread_attentions('MR-1'), 1)

        response = self.call(client, 'PATCH', '/v1/messages', json={
                'administration_id': self.administration('C'),
                'messages': [{'id': incoming, 'read': True},
                    {'id': sent, 'read': True},
                    {'id': theirs, 'read': True},
                    {'id': '999999', 'read': True},
                    {'id': 'abc', 'read': True},
                    {'id': '999998', 'read': 'yes'}]})
        self.assertEqual(response.status_code, 200, response.text)
        body = response.json()
        self.assertEqual((body['success'], body['count']), (True, 1))
        self.assertEqual(sorted(body['errors']),
            sorted([sent, theirs, '999999', 'abc', '999998']))
        read = self.message(incoming)
        self.assertTrue(read['read_at'])
        self.assertEqual(read['read_by_user']['name'], 'Consultant C')
        self.assertEqual(self.unread_attentions('MR-1'), 0)
        self.assertIsNone(self.message(theirs, 'A')['read_at'])

        response = self.call(client, 'PATCH', '/v1/messages', json={
                'administration_id': self.administration('C'),
                'messages': [{'id': int(incoming), 'read': False}]})
        self.assertEqual(response.json()['count'], 1, response.text)
        unread = self.message(incoming)
        self.assertEqual((unread['read_at'], unread['read_by_user']),
            (None, None))
        self.assertEqual(self.unread_attentions('MR-1'), 1)

        # Malformed: 422, nothing processed.
        for messages in [[], {'id': incoming, 'read': True},
                [{'id': incoming, 'read': True}] * 1001]:
            response = self.call(client, 'PATCH', '/v1/messages', json={
                    'administration_id': self.administration('C'),
                    'messages': messages})
            self.assertEqual(response.status_code, 422, response.text)
        self.assertIsNone(self.message(incoming)['read_at'])
        # Another administration's token changes nothing of C.
        response = self.call(other, 'PATCH', '/v1/messages', json={
                'administration_id': self.administration('C'),
                'messages': [{'id': incoming, 'read': True}]})
        self.assertEqual(response.status_code, 403)
        response = self.call(other, 'PATCH', '/v1/messages', json={
                'administration_id': self.administration('A'),
                'messages': [{'id': incoming, 'read': True}]})
        self.assertEqual(list(response.json()['errors']), [incoming])
        self.assertIsNone(self.message(incoming)['read_at'])
        # A token without messages:write.
        response = self.call(self.client('C', 'read'), 'PATCH',
            '/v1/messages', json={
                'administration_id': self.administration('C'),
                'messages': [{'id': incoming, 'read': True}]})
        self.assertEqual(response.status_code, 403)

    def test_credit_cases_and_psp_transactions(self):
        "A collection case and an online payment as Payt shows them"
        client = self.c()
        ids = self.seed('CC', ['CC-1'], days=40)
        case_id, payment_id = self.as_admin(
            "Case = pool.get('payt.case')\n"
            "Online = pool.get('payt.online.payment')\n"
            "item, = Item.search([('external_id', '=', 'CC-1')])\n"
            "case, = Case.open_for_items([item])\n"
            "payment, = Online.create([{'company': item.company.id,"
            " 'administration': administration.id, 'debtor': item.debtor.id,"
            " 'status': 'paid', 'currency': item.currency.id,"
            " 'amount': item.open_amount, 'method': 'ideal',"
            " 'lines': [('create', [{'item': item.id,"
            " 'amount': item.open_amount}])]}])\n"
            "print(json.dumps([case.id, payment.id]))")
        cases = self.call(client, 'GET', '/v1/credit_cases',
            params=self.params()).json()['data']
        self.assertEqual([c['id'] for c in cases], [str(case_id)])
        case = self.call(client, 'GET', '/v1/credit_cases/%s' % case_id,
            params=self.params()).json()
        self.assertEqual((case['currency_code'], case['total_amount'][-3],
                case['debtor_id']),
            ('EUR', '.', self.invoice_of('CC-1')['debtor_id']))
        self.assertGreaterEqual(float(case['open_amount']), 121)

        paid = self.call(client, 'GET', '/v1/psp_transactions',
            params=self.params(statuses='paid')).json()['data']
        self.assertEqual([(p['id'], p['status'], p['amount'],
                    p['invoice_ids'], p['payment_method']) for p in paid],
            [(str(payment_id), 'paid', '121.00', [ids['CC-1']], 'ideal')])
        self.assertEqual(self.call(client, 'GET', '/v1/psp_transactions',
                params=self.params(statuses='refunded')).json()['data'], [])
        self.assertEqual(self.call(client, 'GET',
                '/v1/psp_transactions/%s' % payment_id,
                params=self.params()).json()['status'], 'paid')
        self.assertEqual(self.call(client, 'GET', '/v1/psp_transactions',
                params=self.params(statuses='bogus')).status_code, 422)

        other = self.client('A')
        for path in ['/v1/credit_cases/%s' % case_id,
                '/v1/psp_transactions/%s' % payment_id]:
            response = self.call(other, 'GET', path,
                params={'administration_id': self.administration('A')})
            self.assertEqual(response.status_code, 404, path)
            response = self.call(other, 'GET', path, params=self.params())
            self.assertEqual(response.status_code, 403, path)


    def test_oauth_authorization_code(self):
        "A back-office user grants an application C's invoices, refreshed"
        application = self.as_admin(
            "Application = pool.get('payt.api.application')\n"
            "User = pool.get('res.user'); Group = pool.get('res.group')\n"
            "ModelData = pool.get('ir.model.data')\n"
            "a = Administration(%s)\n"
            "User.create([{'name': 'Anna C', 'login': 'anna_c',"
            " 'password': 'anna-c-2026-secret',"
            " 'companies': [('add', [administration.company.id,"
            " a.company.id])], 'company': administration.company.id,"
            " 'groups': [('add', [ModelData.get_id('payt_dunning',"
            " 'group_payt')])]}])\n"
            "app, secret = Application.register('Partner Package',"
            " 'https://partner.example/callback')\n"
            "print(json.dumps([app.client_id, secret]))"
            % self.administration('A'))
        client_id, secret = application
        browser = httpx.Client(base_url=self.base, timeout=60)
        self.addCleanup(browser.close)
        query = {'response_type': 'code', 'client_id': client_id,
            'redirect_uri': 'https://partner.example/callback',
            'scope': 'invoices:read payment_plans:read', 'state': 'st4te'}
        form = browser.get('/oauth/authorize', params=query)
        self.assertEqual(form.status_code, 200, form.text)
        # Dutch unless the browser prefers English (locale/nl.po).
        self.assertIn('<h1>Toegang tot de API verlenen</h1>', form.text)
        english = browser.get('/oauth/authorize', params=query,
            headers={'Accept-Language': 'en-GB,en;q=0.9'})
        self.assertIn('<h1>Grant access to the API</h1>', english.text)
        hidden = re.search(r'name="query" value="([^"]*)"',
            form.text).group(1).replace('&amp;', '&')
        wrong = browser.post('/oauth/authorize', data={'query': hidden,
                'step': 'login', 'login': 'anna_c', 'password': 'wrong'})
        self.assertEqual(wrong.status_code, 401)
        self.assertIn('Onjuiste gebruikersnaam of wachtwoord.', wrong.text)
        consent = browser.post('/oauth/authorize', data={'query': hidden,
                'step': 'login', 'login': 'anna_c',
                'password': 'anna-c-2026-secret'})
        self.assertEqual(consent.status_code, 200, consent.text)
        self.assertIn('Administration C BV', consent.text)
        self.assertIn('Administration A BV', consent.text)
        self.assertNotIn('Administration B BV', consent.text)
        ticket = re.search(r'name="ticket" value="([^"]*)"',
            consent.text).group(1)
        granted = browser.post('/oauth/authorize', data={'query': hidden,
                'ticket': ticket, 'step': 'grant',
                'administration': [self.administration('C')],
                'scope': ['invoices:read']})
        self.assertEqual(granted.status_code, 302, granted.text)
        location = httpx.URL(granted.headers['Location'])
        self.assertEqual(location.params['state'], 'st4te')
        code = location.params['code']

        basic = {'Authorization': 'Basic ' + base64.b64encode(
                ('%s:%s' % (client_id, secret)).encode()).decode()}
        exchange = {'grant_type': 'authorization_code', 'code': code,
            'redirect_uri': 'https://partner.example/callback'}
        self.assertEqual(browser.post('/oauth/token', data=exchange,
                headers={'Authorization': 'Basic ' + base64.b64encode(
                        ('%s:wrong' % client_id).encode()).decode()}
                ).status_code, 401)
        response = browser.post('/oauth/token', data=exchange, headers=basic)
        self.assertEqual(response.status_code, 200, response.text)
        tokens = response.json()
        self.assertEqual((tokens['token_type'], tokens['expires_in'],
                tokens['scope']), ('Bearer', 7200, 'invoices:read'))
        again = browser.post('/oauth/token', data=exchange, headers=basic)
        self.assertEqual(again.json()['error'], 'invalid_grant')

        def api(access, path, name='C'):
            return self.call(browser, 'GET', path, params={
                    'administration_id': self.administration(name)},
                headers={'Authorization': 'Bearer ' + access})
        self.assertEqual(api(tokens['access_token'],
                '/v1/invoices').status_code, 200)
        # Not granted: the other administration, another scope.
        self.assertEqual(api(tokens['access_token'], '/v1/invoices',
                'A').status_code, 403)
        self.assertEqual(api(tokens['access_token'],
                '/v1/payment_plans').status_code, 403)

        refresh = {'grant_type': 'refresh_token',
            'refresh_token': tokens['refresh_token']}
        response = browser.post('/oauth/token', data=refresh, headers=basic)
        self.assertEqual(response.status_code, 200, response.text)
        rotated = response.json()
        self.assertNotEqual(rotated['refresh_token'],
            tokens['refresh_token'])
        self.assertEqual(api(rotated['access_token'],
                '/v1/invoices').status_code, 200)
        self.assertEqual(api(tokens['access_token'],
                '/v1/invoices').status_code, 401)
        self.assertEqual(browser.post('/oauth/token', data=refresh,
                headers=basic).json()['error'], 'invalid_grant')
        stored = self.as_admin(
            "Token = pool.get('payt.api.token')\n"
            "print(json.dumps([(t.token_hash, t.refresh_hash,"
            " (t.expires - t.create_date).total_seconds(),"
            " (t.refresh_expires - t.create_date).total_seconds())"
            " for t in Token.search([('application', '!=', None),"
            " ('revoked', '=', False)])]))")
        self.assertEqual([s[:2] for s in stored], [[
                    hashlib.sha256(rotated['access_token'].encode()
                        ).hexdigest(),
                    hashlib.sha256(rotated['refresh_token'].encode()
                        ).hexdigest()]])
        # 2 hours and 90 days, give or take the time the request took.
        self.assertAlmostEqual(stored[0][2], 7200, delta=60)
        self.assertAlmostEqual(stored[0][3], 90 * 86400, delta=60)

class ApiTestCase(ResourceTests, unittest.TestCase):
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
            env=dict(cls.database.env, OAUTHLIB_INSECURE_TRANSPORT='1',
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

    def test_partner_receives_signed_webhooks(self):
        "A partner's endpoint gets the events of a payment and a step, signed"
        from .test_webhooks import Receiver
        receiver = Receiver()
        self.addCleanup(receiver.stop)
        receiver.secret = self.as_admin(
            "Webhook = pool.get('payt.webhook')\n"
            "webhook, = Webhook.create([{'administration': administration.id,"
            " 'url': %r}])\n"
            "print(json.dumps(Webhook.set_secrets([webhook])[webhook.id]))"
            % receiver.url)
        # Overdue 8 days: the first reminder's step is due tonight.
        self.seed('WH', ['WH-1'], days=8)
        response = self.call(self.c(), 'PATCH', '/v1/invoices', json={
                'administration_id': self.administration('C'),
                'invoices': [{'invoice_number': 'WH-1',
                        'amount_open': '21.00'}]})
        self.assertEqual(response.status_code, 200, response.text)
        self.database.payt('run', '-d', self.database.name, '--no-send')
        sender = subprocess.run([sys.executable, '-c',
                'import sys; from trytond.modules.payt_dunning.channel '
                'import main; sys.exit(main())', '-d', self.database.name],
            env=self.database.env, capture_output=True, text=True,
            timeout=600)
        self.assertEqual(sender.returncode, 0, sender.stderr[-2000:])

        self.assertTrue(receiver.received)
        self.assertTrue(all(ok for _, _, ok in receiver.received),
            "every request carries the HMAC of its body")
        for headers, raw, _ in receiver.received:
            body = json.loads(raw)
            self.assertEqual(headers['X-PAYT-DELIVERY'], body['id'])
            self.assertEqual(headers['X-PAYT-ADMINISTRATION-IDENTIFIER'],
                self.administration('C'))
        of_wh1 = {e['event']: e for e in receiver.events()
            if (e.get('invoice') or {}).get('invoice_number') == 'WH-1'}
        self.assertIn('invoice_created', of_wh1)
        self.assertIn('invoice_payment_created', of_wh1)
        self.assertIn('invoice_step_performed', of_wh1)
        self.assertEqual(
            of_wh1['invoice_step_performed']['invoice']['open_amount'],
            '21.00')

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
        for path in ['/v1/payment_plans/{id}/approve', '/v1/messages',
                '/v1/credit_cases/{id}', '/v1/psp_transactions',
                '/v1/invoices/deleted']:
            self.assertIn(path, document['paths'])
        self.assertEqual(set(document['paths']['/v1/invoices']),
            {'get', 'post', 'patch'})
        self.assertEqual(set(document['paths']['/v1/messages']),
            {'get', 'post', 'patch'})
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

