# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Online payments end to end over real HTTP: the portal's Pay button, the
Mollie simulator's checkout, its webhook call to our server, which fetches
the payment back through the official mollie-api-python client. Partial
payments, overpayments, refunds, chargebacks, a SEPA mandate through a
first payment, replayed, reordered and forged webhooks, and a later import
of the same payment."""
from decimal import Decimal

import requests

from .test_portal import TODAY, PortalCase

# The Mollie key of every administration of PortalServer.setup_administration.
KEY = 'test_portaltests0000000000000000'


class OnlinePaymentTestCase(PortalCase):
    "Online payments through Mollie"

    def pay(self, items, amount='', mandate=False, outcome='paid'):
        "Pay button, then the simulator's checkout; returns (id, page)."
        data = {'action': 'pay', 'item': [str(self.item_ids[i])
                for i in items], 'amount': amount}
        if mandate:
            data['mandate'] = '1'
        response = self.form(data)
        self.assertEqual(response.status_code, 303, response.text)
        checkout = response.headers['Location']
        self.assertTrue(checkout.startswith(self.server.mollie.url
                + '/checkout/tr_'), checkout)
        page = self.browser.get(checkout, timeout=30)
        self.assertIn('Mollie simulator', page.text)
        mollie_id = checkout.rsplit('/', 1)[1]
        # The checkout calls our webhook, then sends the debtor back.
        back = self.browser.post(checkout, data={'status': outcome},
            timeout=30, allow_redirects=True)
        self.assertEqual(back.status_code, 200)
        return mollie_id, back

    def webhook(self, mollie_id):
        return requests.post('%s/%s/payt/mollie/webhook' % (
                self.server.url, self.server.name), data={'id': mollie_id},
            timeout=30)

    def item(self, external_id, *fields):
        with self.server.transaction() as pool:
            Item = pool.get('payt.item')
            record = Item(self.item_ids[external_id])
            return tuple(getattr(record, f) for f in fields)

    def payments(self):
        return sorted((p['external_id'], p['amount'], p['source'])
            for p in self.query('payt.payment', self.ours([]),
                ['external_id', 'amount', 'source']))

    def state(self):
        "Everything a webhook could change."
        return (self.payments(),
            self.item('A1', 'open_amount', 'state'),
            self.item('A2', 'open_amount', 'state'),
            self.query('payt.event', [('item', 'in', [
                            self.item_ids['A1'], self.item_ids['A2']])]),
            self.query('payt.attention', self.ours([])))

    def test_pay_two_items_through_mollie(self):
        "Paid at Mollie: both items paid at once, attention until confirmed"
        mollie_id, back = self.pay(['A1', 'A2'])
        self.assertIn('uw betaling is ontvangen', back.text)
        self.assertNotIn('F-A1', back.text)
        calls = self.server.mollie.webhook_calls
        self.assertEqual(calls[-1]['id'], mollie_id)
        self.assertEqual(calls[-1]['status'], 200)
        self.assertEqual(self.payments(), [
                (mollie_id, Decimal('121.00'), 'online'),
                (mollie_id + '/2', Decimal('60.50'), 'online')])
        self.assertEqual(self.item('A1', 'open_amount', 'state'),
            (Decimal('0'), 'paid'))
        self.assertEqual(self.item('A2', 'open_amount', 'state'),
            (Decimal('0'), 'paid'))
        self.assertEqual(self.query('payt.attention', self.ours(
                    [('reason', '=', 'online_payment'),
                        ('state', '=', 'open')])), 2)
        events = self.query('payt.event', [('item', '=',
                    self.item_ids['A1']), ('kind', '=', 'online')],
            ['description'])
        self.assertIn(mollie_id, events[0]['description'])
        paid = self.query('payt.online.payment', self.ours([]),
            ['status', 'registered_amount', 'method'])
        self.assertEqual(paid, [{'status': 'paid',
                    'registered_amount': Decimal('181.50'),
                    'method': 'ideal'}])

    def test_replayed_reordered_and_forged_webhooks(self):
        "Replays change nothing twice; forged calls change nothing at all"
        before = self.state()
        # Forged: ids Mollie never issued to us, or malformed.
        self.assertEqual(self.webhook('tr_forged123').status_code, 200)
        self.assertEqual(self.webhook('<script>').status_code, 400)
        self.assertEqual(self.webhook('').status_code, 400)
        self.assertEqual(self.state(), before)
        # Forged for a real payment still open: Mollie says open, nothing.
        response = self.form({'action': 'pay', 'item': [
                    str(self.item_ids['A1'])]})
        mollie_id = response.headers['Location'].rsplit('/', 1)[1]
        for _ in range(3):
            self.assertEqual(self.webhook(mollie_id).status_code, 200)
        self.assertEqual(self.state()[:3], before[:3])
        # Paid; then the webhook replayed by Mollie and by an attacker.
        self.server.mollie.set_status(mollie_id, 'paid')
        paid = self.state()
        self.assertEqual(paid[1], (Decimal('0'), 'paid'))
        for _ in range(3):
            self.server.mollie.call_webhook(mollie_id)
            self.assertEqual(self.webhook(mollie_id).status_code, 200)
        self.assertEqual(self.state(), paid)
        # Reordered: a refund's webhook arrives, then an old 'paid' one is
        # replayed: the state Mollie reports now wins, applied once.
        requests.post('%s/v2/payments/%s/refunds' % (
                self.server.mollie.url, mollie_id),
            json={'amount': {'currency': 'EUR', 'value': '21.00'}},
            headers={'Authorization': 'Bearer ' + KEY}, timeout=30)
        refunded = self.state()
        self.assertEqual(refunded[1], (Decimal('21.00'), 'open'))
        self.server.mollie.call_webhook(mollie_id)
        self.webhook(mollie_id)
        self.assertEqual(self.state(), refunded)

    def test_webhook_for_another_companys_payment_changes_nothing(self):
        """A webhook naming another company's payment, or a payment of
        another Mollie account dressed up as ours, changes nothing"""
        other = self.server.setup_administration('Other %s BV' % (
                self.administration))
        other_key = 'test_othercompany00000000000000'
        with self.server.transaction() as pool:
            Administration = pool.get('payt.administration')
            Administration.write([Administration(other)],
                {'mollie_api_key': other_key})
        other_url, _ = self.server.link(other, 'A')
        response = self.form({'action': 'pay', 'item': [str(
                        self.server.items(other)['A1'])]}, url=other_url)
        self.assertEqual(response.status_code, 303, response.text)
        other_id = response.headers['Location'].rsplit('/', 1)[1]
        with self.server.transaction() as pool:
            record, = pool.get('payt.online.payment').search([
                    ('mollie_id', '=', other_id)])
            record_id = record.id

        def everything():
            return (self.state(), self.query('payt.online.payment', [],
                    ['mollie_id', 'status', 'registered_amount']),
                self.query('payt.payment', [], ['amount']))
        before = everything()
        # The attacker's own Mollie account: a paid payment whose metadata
        # names the other company's record.
        forged = requests.post('%s/v2/payments' % self.server.mollie.url,
            json={'amount': {'currency': 'EUR', 'value': '121.00'},
                'description': 'forged', 'metadata': {
                    'online_payment': record_id, 'administration': other,
                    'database': self.server.name}},
            headers={'Authorization': 'Bearer test_attacker000000000000'},
            timeout=30).json()['id']
        self.server.mollie.set_status(forged, 'paid', call_webhook=False)
        for mollie_id in [forged, other_id]:
            self.assertEqual(self.webhook(mollie_id).status_code, 200)
        self.assertEqual(everything(), before)
        # Our record pointed at the attacker's payment (as if its id had
        # been swapped): fetched with our key, Mollie does not know it.
        with self.server.transaction() as pool:
            Online = pool.get('payt.online.payment')
            Online.write([Online(record_id)], {'mollie_id': forged})
        self.assertEqual(self.webhook(forged).status_code, 200)
        after = everything()
        self.assertEqual(after[0], before[0])
        self.assertEqual(after[2], before[2])
        self.assertIn({'mollie_id': forged, 'status': 'open',
                'registered_amount': Decimal(0)}, after[1])

    def test_partial_payment_and_plan_terms(self):
        "An amount below the open total pays the items in due order"
        mollie_id, back = self.pay(['A1', 'A2'], amount='150,00')
        self.assertEqual(self.payments(), [
                (mollie_id, Decimal('121.00'), 'online'),
                (mollie_id + '/2', Decimal('29.00'), 'online')])
        self.assertEqual(self.item('A2', 'open_amount', 'state'),
            (Decimal('31.50'), 'open'))
        events = self.query('payt.event', [('item', '=',
                    self.item_ids['A2']), ('kind', '=', 'online')],
            ['description'])
        self.assertIn('partial', events[0]['description'])
        self.assertIn('EUR 31,50', back.text)
        for amount in ['0', '-5', '181.51', '1e3', 'abc', '10.001']:
            response = self.form({'action': 'pay', 'item': [
                        str(self.item_ids['A2'])], 'amount': amount})
            self.assertIn('error=amount', response.headers['Location'],
                amount)

    def test_online_payment_counts_toward_a_running_plan(self):
        "A plan's terms take the online payment in order"
        with self.server.transaction() as pool:
            Plan = pool.get('payt.plan')
            Item = pool.get('payt.item')
            a1 = Item(self.item_ids['A1'])
            plan = Plan.create_for(a1.debtor, [a1], [], 2, TODAY)
            Plan.start([plan])
            plan_id = plan.id
        self.pay(['A1'], amount='60.50')
        with self.server.transaction() as pool:
            Plan = pool.get('payt.plan')
            plan = Plan(plan_id)
            self.assertEqual([(t.amount, t.paid_amount, t.state)
                    for t in plan.terms], [
                    (Decimal('60.50'), Decimal('60.50'), 'paid'),
                    (Decimal('60.50'), Decimal('0'), 'open')])
            self.assertEqual(plan.state, 'running')

    def test_overpayment_is_registered_apart(self):
        "The package booked part meanwhile: the rest is an overpayment"
        response = self.form({'action': 'pay', 'item': [
                    str(self.item_ids['A1'])]})
        mollie_id = response.headers['Location'].rsplit('/', 1)[1]
        def import_(pool, batch):
            pool.get('payt.administration').import_batch(
                self.administration, batch)
        self.server.call(lambda pool: import_(pool, {
                    'items': [{'external_id': 'A1', 'debtor': 'A',
                            'due_date': TODAY.isoformat(),
                            'amount': '121.00', 'open_amount': '100.00'}],
                    'payments': [{'external_id': 'BANK-1', 'item': 'A1',
                            'date': TODAY.isoformat(), 'amount': '21.00'}]}))
        self.server.mollie.set_status(mollie_id, 'paid')
        self.assertEqual(self.payments(), [
                ('BANK-1', Decimal('21.00'), 'import'),
                (mollie_id, Decimal('100.00'), 'online'),
                (mollie_id + '/2', Decimal('21.00'), 'online')])
        self.assertEqual(self.item('A1', 'open_amount', 'state'),
            (Decimal('0'), 'paid'))
        over = self.query('payt.attention', self.ours(
                [('reason', '=', 'booking_error')]), ['description'])
        self.assertIn('Overpayment of EUR 21.00', over[0]['description'])
        # A full refund takes the overpayment back first, then the item.
        requests.post('%s/v2/payments/%s/refunds' % (
                self.server.mollie.url, mollie_id),
            json={'amount': {'currency': 'EUR', 'value': '121.00'}},
            headers={'Authorization': 'Bearer ' + KEY}, timeout=30)
        self.assertEqual(sum(p[1] for p in self.payments()
                if p[2] == 'online'), Decimal('0'))
        self.assertEqual(self.item('A1', 'open_amount', 'state'),
            (Decimal('100.00'), 'open'))

    def test_chargeback_reopens_the_item(self):
        "A chargeback puts the amount back and shows on the timeline"
        mollie_id, _ = self.pay(['A1'])
        self.server.mollie.chargeback(mollie_id, '121.00')
        self.assertEqual(self.item('A1', 'open_amount', 'state'),
            (Decimal('121.00'), 'open'))
        events = self.query('payt.event', [('item', '=',
                    self.item_ids['A1']), ('kind', '=', 'online')],
            ['description'])
        self.assertIn('chargeback of EUR 121.00', events[-1]['description'])
        self.assertEqual(self.payments(), [
                (mollie_id, Decimal('121.00'), 'online'),
                (mollie_id + '/r2', Decimal('-121.00'), 'online')])
        # Replayed chargeback webhook: nothing more.
        self.server.mollie.call_webhook(mollie_id)
        self.assertEqual(len(self.payments()), 2)

    def test_failed_payment_registers_nothing(self):
        "Failed, canceled or expired at Mollie: items stay open"
        for outcome in ['failed', 'canceled', 'expired']:
            _, back = self.pay(['A1'], outcome=outcome)
            self.assertIn('niet gelukt', back.text)
        self.assertEqual(self.payments(), [])
        self.assertEqual(self.item('A1', 'open_amount', 'state'),
            (Decimal('121.00'), 'open'))

    def test_later_import_of_the_same_payment_does_not_count_twice(self):
        "The package's import of the Mollie payment confirms it"
        mollie_id, _ = self.pay(['A1'])
        # First an import from before the package booked it: the item
        # stays paid online (read net of the unconfirmed payment).
        def import_(pool, batch):
            pool.get('payt.administration').import_batch(
                self.administration, batch)
        self.server.call(lambda pool: import_(pool, {
                    'items': [{'external_id': 'A1', 'debtor': 'A',
                            'due_date': TODAY.isoformat(),
                            'amount': '121.00', 'open_amount': '121.00'}]}))
        self.assertEqual(self.item('A1', 'open_amount', 'state'),
            (Decimal('0'), 'paid'))
        self.assertEqual(self.item('A1', 'online_pending')[0],
            Decimal('121.00'))
        # Then the package books it, with Mollie's id.
        self.server.call(lambda pool: import_(pool, {
                    'items': [{'external_id': 'A1', 'debtor': 'A',
                            'due_date': TODAY.isoformat(),
                            'amount': '121.00', 'open_amount': '0'}],
                    'payments': [{'external_id': mollie_id, 'item': 'A1',
                            'date': TODAY.isoformat(),
                            'amount': '121.00'}]}))
        self.assertEqual(self.payments(), [
                (mollie_id, Decimal('121.00'), 'online')])
        self.assertEqual(self.item('A1', 'open_amount', 'state',
                'online_pending'), (Decimal('0'), 'paid', Decimal('0')))
        self.assertEqual(self.query('payt.attention', self.ours(
                    [('reason', '=', 'online_payment'),
                        ('state', '=', 'open')])), 0)
        self.assertEqual(self.query('payt.online.payment', self.ours(
                    [('confirmed', '=', True)])), 1)
        # And again: still once.
        self.server.call(lambda pool: import_(pool, {
                    'payments': [{'external_id': mollie_id, 'item': 'A1',
                            'date': TODAY.isoformat(),
                            'amount': '121.00'}]}))
        self.assertEqual(len(self.payments()), 1)

    def test_sepa_mandate_through_a_first_payment(self):
        "A first payment with the mandate box ticked leaves a mandate"
        mollie_id, back = self.pay(['A2'], mandate=True)
        payment = self.server.mollie.payments[mollie_id]
        self.assertEqual(payment['sequenceType'], 'first')
        self.assertTrue(payment['customerId'].startswith('cst_'))
        with self.server.transaction() as pool:
            Debtor = pool.get('payt.debtor')
            anna, = Debtor.search(self.ours([('external_id', '=', 'A')]))
            self.assertEqual(anna.mollie_customer_id, payment['customerId'])
            self.assertEqual(anna.mollie_mandate_id, payment['mandateId'])
            self.assertEqual(anna.mollie_mandate_status, 'valid')
            self.assertIn('...4300', anna.mollie_mandate_label)
        page = self.get().text
        self.assertIn('id="mandate"', page)
        self.assertNotIn('name="mandate"', page)
