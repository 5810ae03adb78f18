# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Online payments through Mollie.

The portal's Pay button creates a Mollie payment for the chosen items and
sends the debtor to Mollie's checkout. Mollie then calls our webhook with
nothing but the payment id; as Mollie requires, the webhook trusts nothing
it was told and fetches the payment back from Mollie, so a forged call
changes nothing and a replayed or reordered one finds the state already
applied.

What Mollie says was paid, net of refunds and chargebacks, is registered
as payt.payment records with source 'online' (external id: the Mollie id,
then id/2, id/3 ... per further item, id/rN for reversals) and taken off
the items' open amounts at once. Until the accounting package confirms the
payment (an import carrying the same id, or closing the item) the point of
attention "online payment registered" stays open and later imports are
read net of it, so it never counts twice."""
import datetime
import logging
import re
from decimal import Decimal

from werkzeug.exceptions import BadRequest, ServiceUnavailable

from trytond import config
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.protocols.wrappers import (
    Response, set_max_request_size, with_pool, with_transaction)
from trytond.transaction import Transaction
from trytond.wsgi import app

from .company import CompanyConsistentMixin
from .hub import MaskedSecretsMixin
from .timeline import event_params

logger = logging.getLogger(__name__)

MOLLIE_ID = re.compile(r'^tr_[A-Za-z0-9]{1,64}$')
STATUSES = [
    ('created', "Created"),
    ('open', "Open"),
    ('pending', "Pending"),
    ('authorized', "Authorized"),
    ('paid', "Paid"),
    ('failed', "Failed"),
    ('expired', "Expired"),
    ('canceled', "Canceled"),
    ]
_ro = {'readonly': True}


class Unavailable(Exception):
    "Mollie could not be reached or refused the payment."


def mollie_client(administration):
    from mollie.api.client import Client
    key = (administration.mollie_api_key
        or config.get('payt', 'mollie_api_key', default=''))
    if not key:
        raise Unavailable("No Mollie API key for %s"
            % administration.rec_name)
    client = Client(api_endpoint=config.get('payt', 'mollie_api_endpoint',
            default=''), timeout=(5, 20), retry=1)
    client.set_api_key(key)
    return client


def _value(money):
    return Decimal(money['value']) if money else Decimal(0)


class OnlinePayment(CompanyConsistentMixin, ModelSQL, ModelView):
    "Online Payment"
    __name__ = 'payt.online.payment'
    __string__ = "Online Payment"
    company = fields.Many2One('company.company', "Company", required=True,
        **_ro)
    administration = fields.Many2One('payt.administration',
        "Administration", required=True, ondelete='CASCADE', **_ro)
    debtor = fields.Many2One('payt.debtor', "Debtor", required=True,
        ondelete='CASCADE', **_ro)
    mollie_id = fields.Char("Mollie ID", **_ro)
    status = fields.Selection(STATUSES, "Status", required=True, **_ro)
    currency = fields.Many2One('currency.currency', "Currency",
        required=True, **_ro)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True, **_ro)
    amount_refunded = fields.Numeric("Refunded", digits=(16, 2), **_ro)
    amount_charged_back = fields.Numeric("Charged Back", digits=(16, 2),
        **_ro)
    registered_amount = fields.Numeric("Registered", digits=(16, 2),
        required=True, **_ro,
        help="Net amount taken off the items so far.")
    sequence_type = fields.Selection([
            ('oneoff', "One-off"),
            ('first', "First (mandate)"),
            ], "Sequence", required=True, **_ro)
    method = fields.Char("Method", **_ro)
    checkout_url = fields.Char("Checkout URL", **_ro)
    paid_at = fields.Timestamp("Paid At", **_ro)
    confirmed = fields.Boolean("Confirmed by Accounting", **_ro)
    confirmed_date = fields.Date("Confirmed On", **_ro)
    lines = fields.One2Many('payt.online.payment.line', 'payment',
        "Items", readonly=True)
    payments = fields.One2Many('payt.payment', 'online_payment',
        "Registered Payments", readonly=True)

    Unavailable = Unavailable

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('mollie_unique', Unique(t, t.mollie_id),
                'payt_dunning.msg_online_payment_unique'),
            ]
        cls._sql_indexes.add(Index(t, (t.debtor, Index.Range())))
        cls._order = [('create_date', 'DESC'), ('id', 'DESC')]
        cls._buttons.update({'refresh': {}})

    @staticmethod
    def default_status():
        return 'created'

    @staticmethod
    def default_registered_amount():
        return Decimal(0)

    @staticmethod
    def default_sequence_type():
        return 'oneoff'

    @staticmethod
    def default_confirmed():
        return False

    def get_rec_name(self, name):
        return self.mollie_id or str(self.id)

    # ------------------------------------------------------------ start
    @classmethod
    def start(cls, debtor, items, amount=None, mandate=False,
            portal_url=None, language='nl'):
        """A Mollie payment for the items (all of their open amount, or
        `amount` spread over them by due date); returns the record with
        its checkout URL."""
        from .portal import base_url
        administration = debtor.administration
        currency = administration.company.currency
        items = sorted(items, key=lambda i: (i.due_date, i.id))
        total = sum((i.open_amount for i in items), Decimal(0))
        amount = currency.round(total if amount is None else amount)
        lines, left = [], amount
        for item in items:
            part = min(item.open_amount, left)
            if part > 0:
                lines.append({'item': item.id, 'amount': part})
            left -= part
        payment, = cls.create([{'company': debtor.company.id,
                    'administration': administration.id,
                    'debtor': debtor.id, 'currency': currency.id,
                    'amount': amount,
                    'sequence_type': 'first' if mandate else 'oneoff',
                    'lines': [('create', lines)]}])
        client = mollie_client(administration)
        numbers = ', '.join(i.number or i.external_id for i in items)
        database = Transaction().database.name
        data = {
            'amount': {'currency': currency.code,
                'value': '%.2f' % amount},
            'description': ("%s %s" % (administration.company.rec_name,
                    numbers))[:255],
            'redirectUrl': '%s?payment=%s' % (
                portal_url or base_url(), payment.id),
            'webhookUrl': '%s/%s/payt/mollie/webhook' % (
                base_url(), database),
            'locale': 'nl_NL' if language == 'nl' else 'en_US',
            'metadata': {'online_payment': payment.id,
                'administration': administration.id,
                'database': database},
            }
        try:
            if mandate:
                data['sequenceType'] = 'first'
                data['customerId'] = debtor.mollie_customer(client)
            mollie = client.payments.create(data)
        except Unavailable:
            raise
        except Exception as error:
            raise Unavailable(str(error)) from error
        payment.mollie_id = mollie.id
        payment.status = mollie.status
        payment.checkout_url = mollie.checkout_url
        payment.save()
        return payment

    # ---------------------------------------------------------- webhook
    @classmethod
    def sync(cls, mollie_id):
        """Bring our record in line with what Mollie says now. Returns
        False when the id is not ours (nothing changes)."""
        payments = cls.search([('mollie_id', '=', mollie_id)], limit=1)
        if not payments:
            return False
        payment, = payments
        cls.lock([payment])
        payment = cls(payment.id)
        client = mollie_client(payment.administration)
        from mollie.api.error import NotFoundError
        try:
            mollie = client.payments.get(mollie_id)
        except NotFoundError:
            # Not a payment of this administration's Mollie account.
            logger.warning("Mollie payment %s not found with the key of %s",
                mollie_id, payment.administration.rec_name)
            return False
        except Exception as error:
            logger.warning("Mollie payment %s not fetched: %s",
                mollie_id, error)
            raise Unavailable(str(error)) from error
        if not payment._is_ours(mollie):
            logger.warning("Mollie payment %s does not match ours",
                mollie_id)
            return False
        payment._apply(mollie, client)
        return True

    def _is_ours(self, mollie):
        """Whether what Mollie answered (with this administration's key) is
        this very payment: id, our record, administration and database in
        its metadata, amount and currency. A webhook naming another
        company's or another database's payment changes nothing here."""
        metadata = mollie.metadata or {}
        database = Transaction().database.name
        return not (mollie.id != self.mollie_id
            or metadata.get('online_payment') != self.id
            or metadata.get('database', database) != database
            or metadata.get('administration', self.administration.id)
            != self.administration.id
            or _value(mollie.amount) != self.amount
            or mollie.amount['currency'] != self.currency.code)

    def _apply(self, mollie, client):
        pool = Pool()
        Plan = pool.get('payt.plan')
        charged_before = self._stored_charged_back()
        refunded = _value(mollie.amount_refunded)
        charged_back = _value(mollie.amount_chargedback)
        status = mollie.status
        target = Decimal(0)
        if status == 'paid':
            target = max(self.amount - refunded - charged_back, Decimal(0))
        self.status = status
        self.method = mollie.method
        self.amount_refunded = refunded
        self.amount_charged_back = charged_back
        if status == 'paid' and not self.paid_at:
            self.paid_at = datetime.datetime.now()
        delta = target - self.registered_amount
        reason = "chargeback" if charged_back > charged_before else "refund"
        if delta > 0:
            self._register(delta)
        elif delta < 0:
            self._reverse(-delta, reason)
        self.registered_amount = target
        self.save()
        if (status == 'paid' and self.sequence_type == 'first'
                and mollie.mandate_id):
            self.debtor.store_mandate(client, mollie.customer_id,
                mollie.mandate_id)
        if delta:
            items = [l.item for l in self.lines if l.item]
            plans = Plan.search([('state', '=', 'running'),
                    ('lines.item', 'in', [i.id for i in items])])
            if plans:
                Plan.apply_payments(plans)

    def _stored_charged_back(self):
        table = self.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.select(table.amount_charged_back,
                where=table.id == self.id))
        row = cursor.fetchone()
        return Decimal(str(row[0])) if row and row[0] is not None \
            else Decimal(0)

    def _external_id(self):
        Payment = Pool().get('payt.payment')
        count = Payment.search([('online_payment', '=', self.id)],
            count=True)
        return self.mollie_id if not count else '%s/%s' % (
            self.mollie_id, count + 1)

    def _event(self, item, text_key, **params):
        pool = Pool()
        Event = pool.get('payt.event')
        Event.create([{'company': self.company.id, 'item': item.id,
                    'date': pool.get('ir.date').today(), 'kind': 'online',
                    'text_key': text_key, 'text_params': event_params(
                        reference=self.mollie_id, **params)}])

    def _register(self, amount):
        "Take `amount` off the items in order; any rest is an overpayment."
        pool = Pool()
        Payment = pool.get('payt.payment')
        Item = pool.get('payt.item')
        Line = pool.get('payt.online.payment.line')
        Attention = pool.get('payt.attention')
        today = pool.get('ir.date').today()
        left = amount
        for line in self.lines:
            item = Item(line.item.id)
            room = min(line.amount - (line.registered or 0),
                item.open_amount if item.state == 'open' else Decimal(0))
            part = max(min(room, left), Decimal(0))
            if part <= 0:
                continue
            Payment.create([{'company': self.company.id,
                        'administration': self.administration.id,
                        'item': item.id, 'external_id': self._external_id(),
                        'date': today, 'amount': part, 'source': 'online',
                        'online_payment': self.id}])
            open_amount = item.open_amount - part
            values = {'open_amount': open_amount}
            if open_amount <= 0:
                values.update(state='paid', paid_date=today)
            Item.write([item], values)
            Line.write([line], {'registered': (line.registered or 0)
                    + part})
            left -= part
            partial = open_amount > 0
            self._event(item, 'msg_event_online_paid_partially' if partial
                else 'msg_event_online_paid', amount=part,
                open_amount=open_amount)
            Attention.raise_for(self.administration, 'online_payment',
                'msg_attention_online_payment', debtor=self.debtor,
                item=item, reference=self.mollie_id, amount=part,
                invoice=item.number or item.external_id)
        if left > 0:
            Payment.create([{'company': self.company.id,
                        'administration': self.administration.id,
                        'item': None, 'external_id': self._external_id(),
                        'date': today, 'amount': left, 'source': 'online',
                        'online_payment': self.id}])
            Attention.raise_for(self.administration, 'booking_error',
                'msg_attention_online_overpaid', debtor=self.debtor,
                amount=left, reference=self.mollie_id,
                debtor_name=self.debtor.name)
            for line in self.lines[:1]:
                self._event(line.item, 'msg_event_online_overpaid',
                    amount=left)

    def _reverse(self, amount, reason):
        "A refund or chargeback: put `amount` back on the items, last first."
        pool = Pool()
        Payment = pool.get('payt.payment')
        Item = pool.get('payt.item')
        Line = pool.get('payt.online.payment.line')
        Attention = pool.get('payt.attention')
        today = pool.get('ir.date').today()
        left = amount
        # An overpayment is the first to go back.
        over = sum((p.amount for p in self.payments if not p.item),
            Decimal(0))
        if over > 0 and left > 0:
            part = min(over, left)
            Payment.create([{'company': self.company.id,
                        'administration': self.administration.id,
                        'item': None, 'external_id': '%s/r%s' % (
                            self.mollie_id, len(self.payments) + 1),
                        'date': today, 'amount': -part, 'source': 'online',
                        'online_payment': self.id}])
            left -= part
        for line in reversed(self.lines):
            line = Line(line.id)
            part = min(line.registered or 0, left)
            if part <= 0:
                continue
            item = Item(line.item.id)
            count = Payment.search([('online_payment', '=', self.id)],
                count=True)
            Payment.create([{'company': self.company.id,
                        'administration': self.administration.id,
                        'item': item.id, 'external_id': '%s/r%s' % (
                            self.mollie_id, count + 1),
                        'date': today, 'amount': -part, 'source': 'online',
                        'online_payment': self.id}])
            Item.write([item], {'open_amount': item.open_amount + part,
                    'state': 'open', 'paid_date': None})
            Line.write([line], {'registered': line.registered - part})
            left -= part
            self._event(item, 'msg_event_online_' + reason, amount=part,
                open_amount=item.open_amount + part)
            Attention.raise_for(self.administration, 'online_payment',
                'msg_event_online_' + reason, debtor=self.debtor, item=item,
                reference=self.mollie_id, amount=part,
                open_amount=item.open_amount + part)

    @classmethod
    @ModelView.button
    def refresh(cls, payments):
        for payment in payments:
            if payment.mollie_id:
                cls.sync(payment.mollie_id)

    # ----------------------------------------------------- confirmation
    @classmethod
    def pending_by_item(cls, items):
        "Online amounts per item the accounting package has not confirmed."
        Payment = Pool().get('payt.payment')
        result = {}
        for payment in Payment.search([
                    ('item', 'in', [i.id for i in items]),
                    ('source', '=', 'online'),
                    ('online_payment.confirmed', '=', False)]):
            result[payment.item.id] = result.get(payment.item.id,
                Decimal(0)) + payment.amount
        return result

    @classmethod
    def confirm(cls, payments):
        "The accounting package booked them: their attention is done."
        pool = Pool()
        Attention = pool.get('payt.attention')
        cls.write(payments, {'confirmed': True,
                'confirmed_date': pool.get('ir.date').today()})
        for payment in payments:
            items = [p.item.id for p in payment.payments if p.item]
            attentions = Attention.search([
                    ('reason', '=', 'online_payment'),
                    ('state', '=', 'open'),
                    ('item', 'in', items)])
            still = cls.pending_by_item([p.item for p in payment.payments
                    if p.item])
            attentions = [a for a in attentions if not still.get(a.item.id)]
            if attentions:
                Attention.resolve(attentions)


class OnlinePaymentLine(CompanyConsistentMixin, ModelSQL, ModelView):
    "Online Payment Item"
    _company_path = 'payment.company'
    __name__ = 'payt.online.payment.line'
    __string__ = "Online Payment Item"
    payment = fields.Many2One('payt.online.payment', "Online Payment",
        required=True, ondelete='CASCADE', **_ro)
    item = fields.Many2One('payt.item', "Open Item", required=True,
        ondelete='CASCADE', **_ro)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True, **_ro)
    registered = fields.Numeric("Registered", digits=(16, 2), **_ro)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('payment')
        cls._order = [('id', 'ASC')]

    @staticmethod
    def default_registered():
        return Decimal(0)


class Payment(metaclass=PoolMeta):
    __name__ = 'payt.payment'
    online_payment = fields.Many2One('payt.online.payment',
        "Online Payment", readonly=True, ondelete='RESTRICT')


class Debtor(metaclass=PoolMeta):
    __name__ = 'payt.debtor'
    mollie_customer_id = fields.Char("Mollie Customer", readonly=True)
    mollie_mandate_id = fields.Char("SEPA Mandate", readonly=True)
    mollie_mandate_status = fields.Char("Mandate Status", readonly=True)
    mollie_mandate_label = fields.Char("Mandate Account", readonly=True)
    online_payments = fields.One2Many('payt.online.payment', 'debtor',
        "Online Payments", readonly=True)

    def mollie_customer(self, client):
        "The debtor's Mollie customer, created on first use."
        if not self.mollie_customer_id:
            customer = client.customers.create({'name': self.name,
                    'email': self.email or None,
                    'locale': 'nl_NL' if self.language == 'nl'
                    else 'en_US',
                    'metadata': {'debtor': self.id}})
            self.mollie_customer_id = customer.id
            self.save()
        return self.mollie_customer_id

    def store_mandate(self, client, customer_id, mandate_id):
        if customer_id != self.mollie_customer_id:
            return
        customer = client.customers.get(customer_id)
        mandate = customer.mandates.get(mandate_id)
        details = mandate.details or {}
        account = details.get('consumerAccount') or ''
        label = '%s (%s ...%s)' % (mandate.mandate_reference or mandate.id,
            details.get('consumerName') or '', account[-4:])
        self.mollie_mandate_id = mandate.id
        self.mollie_mandate_status = mandate.status
        self.mollie_mandate_label = label
        self.save()


class OpenItem(metaclass=PoolMeta):
    __name__ = 'payt.item'
    online_pending = fields.Function(fields.Numeric("Paid Online, "
            "Unconfirmed", digits=(16, 2)), 'get_online_pending')

    @classmethod
    def get_online_pending(cls, items, name):
        OnlinePayment = Pool().get('payt.online.payment')
        pending = OnlinePayment.pending_by_item(items)
        return {i.id: pending.get(i.id, Decimal(0)) for i in items}


class Administration(MaskedSecretsMixin, metaclass=PoolMeta):
    __name__ = 'payt.administration'
    # The key itself (mollie_api_key, portal.py) is readable only by the
    # group Debtor Management Secrets (secrets.xml): others type it here.
    mollie_api_key_masked = fields.Function(fields.Char("Mollie API Key",
            help="test_... or live_...; shown masked, type a new key to "
            "replace it. Empty: the server's [payt] mollie_api_key."),
        'get_masked', setter='set_masked')

    @classmethod
    def import_batch(cls, administration_id, batch):
        """An imported payment carrying a Mollie id confirms the online
        payment instead of counting again; open amounts the package
        reports are read net of online payments it has not booked yet."""
        if isinstance(batch, dict):
            batch = cls._net_of_online(int(administration_id), batch)
        return super().import_batch(administration_id, batch)

    @classmethod
    def _net_of_online(cls, administration_id, batch):
        pool = Pool()
        OnlinePayment = pool.get('payt.online.payment')
        Item = pool.get('payt.item')
        online = {p.mollie_id: p for p in OnlinePayment.search([
                    ('administration', '=', administration_id),
                    ('confirmed', '=', False),
                    ('registered_amount', '!=', 0)])}
        if not online:
            return batch
        batch = dict(batch)
        confirmed, kept = set(), []
        for record in batch.get('payments') or []:
            external_id = str((record or {}).get('external_id', ''))
            mollie_id = external_id.split('/')[0]
            if isinstance(record, dict) and mollie_id in online:
                confirmed.add(online[mollie_id])
            else:
                kept.append(record)
        if 'payments' in batch:
            batch['payments'] = kept
        items = [r for r in batch.get('items') or []
            if isinstance(r, dict)]
        stored = {i.external_id: i for i in Item.search([
                    ('administration', '=', administration_id),
                    ('external_id', 'in',
                        [str(r.get('external_id')) for r in items])])}
        remaining = {p: p for p in online.values() if p not in confirmed}
        pending = OnlinePayment.pending_by_item(list(stored.values())) \
            if remaining else {}
        closes = set()
        new_items = []
        for record in batch.get('items') or []:
            item = stored.get(str((record or {}).get('external_id'))) \
                if isinstance(record, dict) else None
            if item and pending.get(item.id):
                try:
                    reported = Decimal(str(record.get('open_amount')))
                except Exception:
                    new_items.append(record)
                    continue
                if reported == 0:
                    closes.add(item.id)
                else:
                    record = dict(record, open_amount=str(max(
                                reported - pending[item.id], Decimal(0))))
            new_items.append(record)
        if 'items' in batch:
            batch['items'] = new_items
        for payment in remaining:
            if any(p.item and p.item.id in closes for p in payment.payments):
                confirmed.add(payment)
        if confirmed:
            OnlinePayment.confirm(list(confirmed))
        return batch


@app.route('/<database_name>/payt/mollie/webhook', methods=['POST'])
@set_max_request_size(4096)
@with_pool
@with_transaction(readonly=False)
def mollie_webhook(request, pool):
    "Mollie's call: only an id; the truth is fetched back from Mollie."
    mollie_id = request.form.get('id', '')
    if not MOLLIE_ID.match(mollie_id):
        raise BadRequest("Invalid id")
    OnlinePayment = pool.get('payt.online.payment')
    try:
        OnlinePayment.sync(mollie_id)
    except Unavailable:
        raise ServiceUnavailable("Mollie unreachable, retry later")
    # 200 also for ids that are not ours: nothing to learn from the answer.
    return Response('', status=200)
