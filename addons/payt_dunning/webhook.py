# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Signed webhooks of the Payt-compatible API (payt-webhooks.yml).

A subscription (`payt.webhook`) belongs to one administration: a URL, all
events or chosen ones, and a secret shown once (when created or rotated)
and afterwards read by the sender only. `emit` writes one delivery
(`payt.webhook.delivery`, the outbox) per active subscription that wants
the event, set-based; the sender POSTs each one:

    X-PAYT-SIGNATURE: hex HMAC-SHA256 of the raw body, keyed with the secret
    X-PAYT-DELIVERY: the delivery's uuid, also the body's "id"
    X-PAYT-ADMINISTRATION-IDENTIFIER: the administration's id

A 2xx answer delivers it; anything else (a 404 too, as Payt suggests for
an event about an object the receiver does not know yet), a refused
connection or a timeout is tried again later, with growing intervals. After
MAX_ATTEMPTS the subscription is deactivated and the administration gets a
point of attention.

At least once: the claim (attempts, next attempt) is committed before the
POST, and the POST happens before the commit that marks the delivery
delivered; a sender killed in between leaves it pending, and it is sent
again, with the same X-PAYT-DELIVERY, when its next attempt is due."""
import datetime
import json
import secrets
import urllib.parse
import uuid

import requests

from trytond.i18n import gettext
from trytond.model import (
    DeactivableMixin, Index, ModelSQL, ModelView, Unique, Workflow, fields)
from trytond.model.exceptions import AccessError, ValidationError
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import (
    Transaction, check_access, without_check_access)
from trytond.wizard import Button, StateTransition, StateView, Wizard

from . import bulk, providers
from .bulk import invalidate_caches
from .company import CompanyConsistentMixin
from .providers.webhook import post

# The events we emit, as Payt names them (issue 12; payt-webhooks.yml).
EVENTS = [
    ('invoice_created', "Invoice created"),
    ('invoice_paid', "Invoice paid"),
    ('invoice_closed', "Invoice closed"),
    ('invoice_reopened', "Invoice reopened"),
    ('invoice_paused', "Invoice paused"),
    ('invoice_resumed', "Invoice resumed"),
    ('invoice_step_performed', "Invoice step performed"),
    ('invoice_payment_created', "Invoice payment created"),
    ('payment_plan_created', "Payment plan created"),
    ('invoice_blocked', "Invoice blocked"),
    ('invoice_new_comment', "Invoice new comment"),
    ('invoice_to_debt_collection', "Invoice to debt collection"),
    ('debtor_new_comment', "Debtor new comment"),
    ('bundled_reminder_sent', "Bundled reminder sent"),
    ('email_bounced', "Email bounced"),
    ('payment_plan_updated', "Payment plan updated"),
    ('payment_plan_deactivated', "Payment plan deactivated"),
    ('payment_plan_finished', "Payment plan finished"),
    ('payment_plan_term_expired', "Payment plan term expired"),
    ('case_created', "Case created"),
    ('case_step_performed', "Case step performed"),
    ('case_paid', "Case paid"),
    ('case_to_bailiff', "Case to bailiff"),
    ('psp_transaction_successful', "PSP transaction successful"),
    ('psp_transaction_refunded', "PSP transaction refunded"),
    ('psp_transaction_charged_back', "PSP transaction charged back"),
    ]
MAX_ATTEMPTS = 10


def setting(name, default):
    return float(providers.setting(name, default))


def retry_delay(attempts):
    """The wait after the n-th attempt: 1, 2, 4 ... minutes up to 8 hours
    (webhook_backoff_seconds, webhook_backoff_max_seconds of
    [payt_channels]); ten attempts span about 8.5 hours."""
    base = setting('webhook_backoff_seconds', 60)
    maximum = setting('webhook_backoff_max_seconds', 8 * 3600)
    return datetime.timedelta(
        seconds=min(base * 2 ** max(attempts - 1, 0), maximum))


def new_secret():
    return 'whsec_' + secrets.token_urlsafe(32)


class Webhook(CompanyConsistentMixin, DeactivableMixin, ModelSQL, ModelView):
    "Webhook"
    __name__ = 'payt.webhook'
    __string__ = "Webhook"
    company = fields.Many2One('company.company', "Company", required=True,
        readonly=True)
    administration = fields.Many2One('payt.administration', "Administration",
        required=True, ondelete='CASCADE',
        states={'readonly': Eval('id', -1) >= 0})
    url = fields.Char("URL", required=True,
        help="Where the events are posted (HTTPS).")
    all_events = fields.Boolean("All Events")
    events = fields.MultiSelection(EVENTS, "Events",
        states={'invisible': Eval('all_events', True)},
        help="The events posted when not all of them.")
    secret = fields.Char("Secret", readonly=True,
        help="Read by the sender only: shown once, when made.")
    secret_rotated_at = fields.Timestamp("Secret Made At", readonly=True)
    deactivated_at = fields.Timestamp("Deactivated At", readonly=True)
    deactivation_reason = fields.Char("Deactivation Reason", readonly=True)
    deliveries = fields.One2Many('payt.webhook.delivery', 'webhook',
        "Deliveries", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        # No __access__ on the administration: Tryton would then grant
        # whoever reads administrations read access here too.
        cls._buttons.update({
                'rotate_secret': {},
                })

    @staticmethod
    def default_company():
        return Transaction().context.get('company')

    @staticmethod
    def default_all_events():
        return True

    @fields.depends('administration')
    def on_change_administration(self):
        if self.administration:
            self.company = self.administration.company

    @classmethod
    def preprocess_values(cls, mode, values):
        values = super().preprocess_values(mode, values)
        if mode == 'create' and values.get('administration'):
            Administration = Pool().get('payt.administration')
            values['company'] = Administration(
                values['administration']).company.id
        if values.get('active'):
            values.setdefault('deactivated_at', None)
            values.setdefault('deactivation_reason', None)
        return values

    @classmethod
    def validate_fields(cls, webhooks, field_names):
        super().validate_fields(webhooks, field_names)
        if field_names and 'url' not in field_names:
            return
        for webhook in webhooks:
            scheme = urllib.parse.urlsplit(webhook.url or '').scheme
            if scheme not in ('http', 'https'):
                raise ValidationError(gettext(
                        'payt_dunning.msg_webhook_url', url=webhook.url))

    @classmethod
    def create(cls, vlist):
        webhooks = super().create(vlist)
        cls.set_secrets(webhooks)
        return webhooks

    @classmethod
    def set_secrets(cls, webhooks):
        """A new secret for each: {id: secret}, to be shown once. Written
        past the field's access rule, which keeps it from every reader."""
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        made = {}
        now = datetime.datetime.now()
        for webhook in webhooks:
            made[webhook.id] = new_secret()
            cursor.execute(*table.update(
                    [table.secret, table.secret_rotated_at],
                    [made[webhook.id], now], where=table.id == webhook.id))
        invalidate_caches()
        return made

    def wants(self, event):
        return self.all_events or event in (self.events or ())

    @classmethod
    @without_check_access
    def wanting(cls, event, administration_ids):
        "The active subscriptions of these administrations to the event."
        return [w for w in cls.search([
                    ('administration', 'in', list(administration_ids))])
            if w.wants(event)]

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_webhook_secret')
    def rotate_secret(cls, webhooks):
        pass

    @classmethod
    def deactivate(cls, webhooks, reason):
        cls.write(webhooks, {'active': False,
                'deactivated_at': datetime.datetime.now(),
                'deactivation_reason': reason[:1000]})


class Delivery(CompanyConsistentMixin, Workflow, ModelSQL, ModelView):
    "Webhook Delivery"
    __name__ = 'payt.webhook.delivery'
    __string__ = "Webhook Delivery"
    company = fields.Many2One('company.company', "Company", required=True,
        readonly=True)
    administration = fields.Many2One('payt.administration', "Administration",
        required=True, readonly=True, ondelete='CASCADE')
    webhook = fields.Many2One('payt.webhook', "Webhook", required=True,
        readonly=True, ondelete='CASCADE')
    event = fields.Selection(EVENTS, "Event", required=True, readonly=True)
    uuid = fields.Char("Delivery ID", required=True, readonly=True,
        help="X-PAYT-DELIVERY and the event's id: the same at every "
        "attempt, so the receiver recognises a repeat.")
    body = fields.Text("Body", readonly=True)
    state = fields.Selection([
            ('pending', "Pending"),
            ('delivered', "Delivered"),
            ('failed', "Failed"),
            ], "State", required=True, readonly=True)
    attempts = fields.Integer("Attempts", readonly=True)
    attempt_at = fields.Timestamp("Last Attempt At", readonly=True)
    next_attempt_at = fields.Timestamp("Next Attempt At", readonly=True)
    status_code = fields.Integer("Last HTTP Status", readonly=True)
    error = fields.Char("Last Error", readonly=True)
    delivered_at = fields.Timestamp("Delivered At", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('uuid_unique', Unique(t, t.uuid),
                'payt_dunning.msg_webhook_delivery_unique'),
            ]
        cls._sql_indexes.add(Index(t,
                (t.next_attempt_at, Index.Range()),
                where=t.state == 'pending'))
        cls._order = [('id', 'DESC')]
        cls._transitions |= {
            ('pending', 'delivered'),
            ('pending', 'failed'),
            }

    @staticmethod
    def default_state():
        return 'pending'

    @staticmethod
    def default_attempts():
        return 0

    # -- emitting ---------------------------------------------------------
    @classmethod
    @without_check_access
    def emit(cls, event, administration, payloads):
        """One pending delivery per payload and active subscription of the
        administration that wants the event; `payloads`: dicts (the
        event's objects, e.g. invoice and debtor) or a function making
        them, called only when someone listens. Returns how many."""
        administration = getattr(administration, 'id', administration)
        webhooks = Pool().get('payt.webhook').wanting(event, [administration])
        if not webhooks:
            return 0
        if callable(payloads):
            payloads = payloads()
        Administration = Pool().get('payt.administration')
        company = Administration(administration).company.id
        now = datetime.datetime.now()
        created_at = now.isoformat() + 'Z'
        rows = []
        for payload in payloads:
            for webhook in webhooks:
                key = str(uuid.uuid4())
                body = dict({'id': key, 'event': event,
                        'created_at': created_at}, **payload)
                rows.append([company, administration, webhook.id, event, key,
                        json.dumps(body, separators=(',', ':')), 'pending',
                        0, now, Transaction().user, now])
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        for start in range(0, len(rows), 1000):
            cursor.execute(*table.insert([table.company,
                        table.administration, table.webhook, table.event,
                        table.uuid, table.body, table.state, table.attempts,
                        table.next_attempt_at, table.create_uid,
                        table.create_date], rows[start:start + 1000]))
        return len(rows)

    @classmethod
    def listened(cls, event, administration_ids):
        "The administrations among these with a subscription to the event."
        return {w.administration.id for w in Pool().get(
                'payt.webhook').wanting(event, administration_ids)}

    # -- sending ----------------------------------------------------------
    @classmethod
    def claim(cls, administration=None, limit=None):
        """Take the due deliveries of active subscriptions; their next
        attempt is scheduled now, so a sender that dies after this commit
        leaves them to be sent again then, by whoever runs."""
        now = datetime.datetime.now()
        domain = [('state', '=', 'pending'),
            ('webhook.active', '=', True),
            ('next_attempt_at', '<=', now)]
        if administration:
            domain.append(('administration', '=',
                    getattr(administration, 'id', administration)))
        deliveries = cls.lock_free(cls.search(domain, limit=limit,
                order=[('next_attempt_at', 'ASC'), ('id', 'ASC')]))
        for delivery in deliveries:
            delivery.attempts = (delivery.attempts or 0) + 1
            delivery.attempt_at = now
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        cls.save(deliveries)
        return [d.id for d in deliveries]

    @classmethod
    def lock_free(cls, deliveries):
        "As Communication.lock_free."
        return bulk.lock_free(deliveries)

    @classmethod
    def jobs(cls, ids):
        "What the POSTs need, as plain values: no database while posting."
        return [{'id': d.id, 'webhook': d.webhook.id, 'url': d.webhook.url,
                'secret': d.webhook.secret, 'uuid': d.uuid,
                'administration': str(d.administration.id),
                'body': (d.body or '').encode()}
            for d in cls.browse(ids) if d.state == 'pending']

    @classmethod
    def post_all(cls, jobs):
        """POST each job; (job, status, error) for each. After a failure,
        the subscription's other jobs of the batch are not tried (status
        None, error None): its receiver is down."""
        down, results = set(), []
        with requests.Session() as session:
            for job in jobs:
                if job['webhook'] in down:
                    results.append((job, None, None))
                    continue
                status, error = post(job, session)
                if not (status and 200 <= status < 300):
                    down.add(job['webhook'])
                results.append((job, status, error))
        return results

    @classmethod
    def record(cls, results):
        """What the receivers answered: delivered, left pending for the next
        attempt, or failed after MAX_ATTEMPTS, which deactivates the
        subscription and tells the administration. Returns how many were
        delivered."""
        now = datetime.datetime.now()
        deliveries = {d.id: d for d in cls.browse(
                [job['id'] for job, _, _ in results])}
        delivered, failed, skipped = [], [], []
        for job, status, error in results:
            delivery = deliveries[job['id']]
            if delivery.state != 'pending':
                continue
            if status is None and error is None:
                skipped.append(delivery)
                continue
            delivery.status_code = status
            delivery.attempt_at = now
            if status and 200 <= status < 300:
                delivery.error = None
                delivery.delivered_at = now
                delivered.append(delivery)
                continue
            delivery.error = (error or 'HTTP %s' % status)[:1000]
            if (delivery.attempts or 0) >= MAX_ATTEMPTS:
                failed.append(delivery)
        for delivery in skipped:
            # Not attempted: the attempt is given back.
            delivery.attempts = max((delivery.attempts or 1) - 1, 0)
        cls.save(list(deliveries.values()))
        cls.deliver(delivered)
        cls.fail(failed)
        return len(delivered)

    @classmethod
    @Workflow.transition('delivered')
    def deliver(cls, deliveries):
        pass

    @classmethod
    @Workflow.transition('failed')
    def fail(cls, deliveries):
        "Exhausted: the subscription is switched off until reactivated."
        pool = Pool()
        Webhook = pool.get('payt.webhook')
        Attention = pool.get('payt.attention')
        webhooks = {d.webhook for d in deliveries if d.webhook.active}
        for webhook in webhooks:
            last = [d for d in deliveries if d.webhook == webhook][-1]
            Webhook.deactivate([webhook], last.error or '')
            Attention.raise_for(webhook.administration, 'webhook_failing',
                'msg_attention_webhook_deactivated', note=last.error,
                url=webhook.url, attempts=MAX_ATTEMPTS, event=last.event)

    @classmethod
    @without_check_access
    def send_pending(cls, administration=None, limit=None):
        """Send the due deliveries in the caller's transaction (the cron's
        `send_pending` path); killed before its commit, nothing is marked
        and they go again, with the same ids."""
        ids = cls.claim(administration, limit)
        if not ids:
            return 0
        return cls.record(cls.post_all(cls.jobs(ids)))


def send_in_batches(transaction, administration=None, batch_size=25):
    """The webhooks' part of `channel.run_sender`, with its `transaction`
    (a committed transaction per call): claim, POST outside any
    transaction, record. Returns how many were delivered."""
    total = 0
    while True:
        ids = transaction(lambda pool: pool.get(
                'payt.webhook.delivery').claim(administration, batch_size))
        if not ids:
            return total
        jobs = transaction(lambda pool: pool.get(
                'payt.webhook.delivery').jobs(ids))
        results = Delivery.post_all(jobs)
        total += transaction(lambda pool: pool.get(
                'payt.webhook.delivery').record(results))


# ----------------------------------------------------- showing the secret

class WebhookSecretDone(ModelView):
    "Webhook Secret"
    __name__ = 'payt.webhook.secret.done'
    __string__ = "Webhook Secret"
    secret = fields.Char("Secret", readonly=True,
        help="Shown only now: copy it to the receiver, which verifies "
        "X-PAYT-SIGNATURE with it.")


class WebhookSecret(Wizard):
    "Rotate Webhook Secret"
    __name__ = 'payt.webhook.secret'
    start = StateTransition()
    done = StateView('payt.webhook.secret.done',
        'payt_dunning.webhook_secret_done_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def transition_start(self):
        Webhook = Pool().get('payt.webhook')
        webhook = self.record
        # Wizards run without access checks: the user must be allowed to
        # change this subscription, as with its form.
        try:
            with check_access():
                Pool().get('ir.model.access').check(Webhook.__name__, 'write')
                Webhook.read([webhook.id], ['id'])
        except AccessError:
            raise AccessError(gettext('payt_dunning.msg_webhook_no_access'))
        self._secret = Webhook.set_secrets([webhook])[webhook.id]
        return 'done'

    def default_done(self, fields):
        return {'secret': self._secret}


class WebhookCreateStart(ModelView):
    "Create Webhook"
    __name__ = 'payt.webhook.create.start'
    __string__ = "Create Webhook"
    administration = fields.Many2One('payt.administration', "Administration",
        required=True)
    url = fields.Char("URL", required=True)
    all_events = fields.Boolean("All Events")
    events = fields.MultiSelection(EVENTS, "Events",
        states={'invisible': Eval('all_events', True)})

    @staticmethod
    def default_all_events():
        return True

    @staticmethod
    def default_administration():
        context = Transaction().context
        if context.get('active_model') == 'payt.administration':
            return context.get('active_id')


class WebhookCreate(Wizard):
    "Create Webhook"
    __name__ = 'payt.webhook.create'
    start = StateView('payt.webhook.create.start',
        'payt_dunning.webhook_create_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Create", 'create_', 'tryton-ok', default=True),
            ])
    create_ = StateTransition()
    done = StateView('payt.webhook.secret.done',
        'payt_dunning.webhook_secret_done_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def transition_create_(self):
        Webhook = Pool().get('payt.webhook')
        # As the user: her access rights and record rules decide.
        with check_access():
            webhook, = Webhook.create([{
                        'administration': self.start.administration.id,
                        'url': self.start.url,
                        'all_events': self.start.all_events,
                        'events': self.start.events,
                        }])
        self._secret = Webhook.set_secrets([webhook])[webhook.id]
        return 'done'

    def default_done(self, fields):
        return {'secret': self._secret}
