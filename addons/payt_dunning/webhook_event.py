# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Where the webhooks' events come from: the import, the run, payments,
pauses, plans and cases emit them set-based (`Delivery.emit`), with the
API's own payloads (invoice, debtor, administration)."""
import email
import email.policy
from decimal import Decimal

from sql import Null
from sql.aggregate import Sum

from trytond.pool import Pool, PoolMeta
from trytond.transaction import Transaction, without_check_access

from .bulk import invalidate_caches


def _entities():
    from . import api
    return api


class Row:
    """A read() row with attribute access: the API's entity functions
    (api.invoice_entity, api.debtor_entity) take it for a record."""

    def __init__(self, values, **links):
        self.__dict__.update(values)
        self.__dict__.update(links)


ITEM_FIELDS = ['administration', 'debtor', 'number', 'external_id',
    'currency.code', 'description', 'invoice_date', 'due_date', 'paid_date',
    'amount', 'open_amount', 'follow_up', 'step.rec_name', 'write_date',
    'create_date', 'case']
DEBTOR_FIELDS = ['administration', 'external_id', 'name', 'coc_number',
    'vat_number', 'language', 'email', 'phone', 'street', 'postal_code',
    'city', 'country', 'write_date', 'create_date']


def read_items(item_ids):
    """{id: Row} of the items with their debtor, read with read(): a few
    queries per thousand items, not an ORM record per field."""
    pool = Pool()
    Item, Debtor = pool.get('payt.item'), pool.get('payt.debtor')
    rows = {}
    with without_check_access():
        for start in range(0, len(item_ids), 1000):
            items = Item.read(item_ids[start:start + 1000], ITEM_FIELDS)
            debtor_ids = list({i['debtor'] for i in items})
            open_amounts = debtor_open_amounts(debtor_ids)
            debtors = {d['id']: Row(d, administration=Row(
                        {'id': d['administration']}),
                    open_amount=open_amounts.get(d['id'], Decimal(0)))
                for d in Debtor.read(debtor_ids, DEBTOR_FIELDS)}
            for item in items:
                step = item.pop('step.', None)
                rows[item['id']] = Row(item,
                    administration=Row({'id': item['administration']}),
                    debtor=debtors[item['debtor']],
                    currency=Row(item.pop('currency.')),
                    step=Row(step) if step else None)
    return rows


def debtor_open_amounts(debtor_ids):
    "{debtor id: open amount} in one query (Debtor.open_amount, in SQL)."
    Item = Pool().get('payt.item')
    item = Item.__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*item.select(item.debtor, Sum(item.open_amount),
            where=item.debtor.in_(debtor_ids) & (item.state == 'open'),
            group_by=[item.debtor]))
    return {d: Decimal(str(a or 0)) for d, a in cursor}


def item_payloads(item_ids, extra=None):
    """The payloads of item events: administration, debtor, invoice (the
    API's shapes); `extra(item)` adds the event's own objects."""
    api = _entities()
    Administration = Pool().get('payt.administration')
    rows = read_items(item_ids)
    names = {}
    payloads = []
    for item_id in item_ids:
        item = rows[item_id]
        administration = item.administration.id
        if administration not in names:
            names[administration] = administration_ref(
                Administration(administration))
        payload = {
            'administration': names[administration],
            'debtor': api.debtor_entity(item.debtor),
            'invoice': api.invoice_entity(item),
            }
        if extra:
            payload.update(extra(item))
        payloads.append(payload)
    return payloads


def administration_ref(administration):
    return {'id': str(administration.id), 'name': administration.name}


def emit_items(event, administration_ids_of, extra=None):
    """Emit `event` for items: `administration_ids_of` is {administration
    id: [item id]}. Only administrations with a listener pay for the
    payloads."""
    Delivery = Pool().get('payt.webhook.delivery')
    listening = Delivery.listened(event, list(administration_ids_of))
    count = 0
    for administration in listening:
        ids = sorted(administration_ids_of[administration])
        if ids:
            count += Delivery.emit(event, administration,
                lambda: item_payloads(ids, extra))
    return count


def items_by_administration(item_ids):
    "{administration id: [item id]} in one query per 10,000."
    Item = Pool().get('payt.item')
    table = Item.__table__()
    cursor = Transaction().connection.cursor()
    result = {}
    item_ids = list(item_ids)
    for start in range(0, len(item_ids), 10000):
        cursor.execute(*table.select(table.administration, table.id,
                where=table.id.in_(item_ids[start:start + 10000])))
        for administration, id_ in cursor:
            result.setdefault(administration, []).append(id_)
    return result


def emit_for_items(event, item_ids, extra=None):
    if not item_ids:
        return 0
    return emit_items(event, items_by_administration(item_ids), extra)


def emit_import(importer):
    """The events of one import batch (importer.BatchImporter.run), from
    what it changed; nothing is read unless someone listens."""
    Delivery = Pool().get('payt.webhook.delivery')
    administration = importer.administration.id
    changes = importer.changes
    if not any(Delivery.listened(e, [administration]) for e in [
                'invoice_created', 'invoice_paid', 'invoice_reopened',
                'invoice_closed', 'invoice_payment_created']):
        return
    if changes['max_item_before'] is not None:
        item = importer.Item.__table__()
        importer.cursor.execute(*item.select(item.id,
                where=(item.administration == administration)
                & (item.id > changes['max_item_before'])))
        emit_items('invoice_created', {administration: [
                    i for i, in importer.cursor]})
    for event in ['paid', 'reopened', 'closed']:
        emit_items('invoice_' + event, {administration: changes[event]})
    payments = importer._stored(importer.Payment, [], changes['payments'])
    emit_payments([p[0] for p in payments.values()])


def performed_items(administration, item, where):
    """The ids of the items a run moves to a step (`where` on the item
    table), read before the move; none when nobody listens."""
    Delivery = Pool().get('payt.webhook.delivery')
    if not Delivery.listened('invoice_step_performed', [administration.id]):
        return []
    cursor = Transaction().connection.cursor()
    cursor.execute(*item.select(item.id, where=where))
    return [i for i, in cursor]


def emit_step_performed(administration, step, item_ids, date):
    "invoice_step_performed for the items the run moved to the step."
    if not item_ids:
        return 0
    invalidate_caches()
    return emit_items('invoice_step_performed',
        {administration.id: item_ids},
        lambda item: {'step': {'id': str(step.id), 'name': step.name,
                'channels': list(step.channels or []),
                'performed_on': date.isoformat()}})


def emit_records(event, records, payload, owner=None):
    """`event` for records with an administration (plans, cases, online
    payments, messages; or their `owner(record)`'s): one payload each,
    `payload(record)`, built only for administrations with a listener."""
    Delivery = Pool().get('payt.webhook.delivery')
    by_administration = {}
    for record in records:
        administration = (owner(record) if owner else record).administration
        by_administration.setdefault(administration.id, []).append(record)
    listening = Delivery.listened(event, list(by_administration))
    count = 0
    for administration in listening:
        group = by_administration[administration]
        with without_check_access():
            count += Delivery.emit(event, administration,
                lambda: [payload(r) for r in group])
    return count


def debtor_payload(record, **objects):
    "The administration and debtor of every payload, and the event's own."
    api = _entities()
    return dict({
            'administration': administration_ref(record.administration),
            'debtor': api.debtor_entity(record.debtor),
            }, **objects)


def plan_payload(plan):
    return debtor_payload(plan, payment_plan=_entities().plan_entity(plan))


def case_payload(case):
    return debtor_payload(case, credit_case=_entities().case_entity(case))


def emit_payments(payment_ids):
    "invoice_payment_created for payments of an item."
    pool = Pool()
    Payment = pool.get('payt.payment')
    api = _entities()
    with without_check_access():
        payments = [p for p in Payment.browse(list(payment_ids)) if p.item]
    by_administration = {}
    for payment in payments:
        by_administration.setdefault(payment.administration.id, []).append(
            payment)
    Delivery = pool.get('payt.webhook.delivery')
    for administration, group in by_administration.items():
        Delivery.emit('invoice_payment_created', administration,
            lambda: [{
                    'administration': administration_ref(
                        p.administration),
                    'debtor': api.debtor_entity(p.item.debtor),
                    'invoice': api.invoice_entity(p.item),
                    'payment': api.payment_entity(p),
                    } for p in group])


# -------------------------------------------- where the events come from

class OpenItem(metaclass=PoolMeta):
    __name__ = 'payt.item'

    @classmethod
    def write(cls, *args):
        "invoice_paid when a write (an online payment) pays an item."
        actions = iter(args)
        paid = []
        for records, values in zip(actions, actions):
            if values.get('state') == 'paid':
                paid += [r.id for r in records if r.state != 'paid']
        super().write(*args)
        emit_for_items('invoice_paid', paid)


class Payment(metaclass=PoolMeta):
    __name__ = 'payt.payment'

    @classmethod
    def create(cls, vlist):
        payments = super().create(vlist)
        emit_payments([p.id for p in payments])
        return payments


class Pause(metaclass=PoolMeta):
    __name__ = 'payt.pause'

    @classmethod
    def hold(cls, records, kind, reason, end_date=None, automatic=None):
        pauses = super().hold(records, kind, reason, end_date=end_date,
            automatic=automatic)
        # Payt's "blocked": out of dunning until resumed, as a stop or
        # PATCH /v1/invoices/block; a pause (with an end) is "paused".
        blocked = kind == 'stop' or automatic == _entities().PAUSE_CAUSE
        cls._emit('invoice_blocked' if blocked else 'invoice_paused', pauses)
        return pauses

    @classmethod
    def lift(cls, pauses, date=None, automatic=False):
        super().lift(pauses, date=date, automatic=automatic)
        cls._emit('invoice_resumed', pauses or [])

    @classmethod
    def _emit(cls, event, pauses):
        "For the open items each pause covers: an item, a debtor's, all."
        Item = Pool().get('payt.item')
        Delivery = Pool().get('payt.webhook.delivery')
        listening = Delivery.listened(event,
            list({p.administration.id for p in pauses}))
        by_administration = {}
        for pause in pauses:
            if pause.administration.id not in listening:
                continue
            domain = [('administration', '=', pause.administration.id),
                ('state', '=', 'open')]
            if pause.item:
                domain.append(('id', '=', pause.item.id))
            elif pause.debtor:
                domain.append(('debtor', '=', pause.debtor.id))
            with without_check_access():
                ids = [i.id for i in Item.search(domain)]
            by_administration.setdefault(pause.administration.id, set()
                ).update(ids)
        emit_items(event, by_administration)


def stored_states(Model, records):
    """{id: state} as stored, read before a write: a record being saved
    already holds its new state."""
    table = Model.__table__()
    cursor = Transaction().connection.cursor()
    ids = list({r.id for r in records})
    states = {}
    for start in range(0, len(ids), 1000):
        cursor.execute(*table.select(table.id, table.state,
                where=table.id.in_(ids[start:start + 1000])))
        states.update(cursor)
    return states


def write_with_changes(klass, cls, args):
    """super(klass, cls).write(*args), the PoolMeta override's write;
    returns {new state: [id]} of the records it moved."""
    actions = iter(args)
    moving = [(records, values['state'])
        for records, values in zip(actions, actions) if 'state' in values]
    before = stored_states(cls, [r for rs, _ in moving for r in rs]
        ) if moving else {}
    super(klass, cls).write(*args)
    changes = {}
    for records, state in moving:
        changes.setdefault(state, []).extend(
            r.id for r in records if before.get(r.id) != state)
    return changes


PLAN_EVENTS = {
    'running': 'payment_plan_updated',
    'cancelled': 'payment_plan_deactivated',
    'broken': 'payment_plan_deactivated',
    'completed': 'payment_plan_finished',
    }


class Plan(metaclass=PoolMeta):
    __name__ = 'payt.plan'

    @classmethod
    def create(cls, vlist):
        plans = super().create(vlist)
        api = _entities()
        emit_records('payment_plan_created', plans,
            lambda plan: debtor_payload(plan, payment_plan={
                    'id': str(plan.id),
                    'debtor_id': str(plan.debtor.id),
                    'created_at': api.timestamp(plan.create_date)}))
        return plans

    @classmethod
    def write(cls, *args):
        """payment_plan_updated when a plan starts (approved: its terms
        run), _deactivated when cancelled or broken, _finished when
        paid."""
        changes = write_with_changes(Plan, cls, args)
        for state, ids in changes.items():
            if state in PLAN_EVENTS and ids:
                emit_records(PLAN_EVENTS[state], cls.browse(ids),
                    plan_payload)


class PlanTerm(metaclass=PoolMeta):
    __name__ = 'payt.plan.term'

    @classmethod
    def write(cls, *args):
        "payment_plan_term_expired when a term is missed (the run)."
        changes = write_with_changes(PlanTerm, cls, args)
        api = _entities()
        emit_records('payment_plan_term_expired',
            cls.browse(changes.get('expired', [])),
            lambda term: dict(plan_payload(term.plan), payment_term={
                    'id': str(term.id),
                    'total_amount': api.money(term.amount),
                    'amount_due': api.money(
                        term.amount - (term.paid_amount or 0)),
                    'due_date': api.day(term.due_date),
                    'expired_on': api.day(term.expired_date),
                    }),
            owner=lambda term: term.plan)


# Our steps of a case as Payt names them (payt-webhooks.yml
# case_step_names); handed_over is case_to_bailiff.
CASE_STEP_NAMES = {
    'reminder': 'summons',
    'second_reminder': 'second_summons',
    'notice_of_default': 'notice_of_default',
    'ready': 'prejudiciary',
    }


class Case(metaclass=PoolMeta):
    __name__ = 'payt.case'

    @classmethod
    def create(cls, vlist):
        cases = super().create(vlist)
        api = _entities()
        emit_records('case_created', cases,
            lambda case: debtor_payload(case, credit_case={
                    'id': str(case.id),
                    'debtor_id': str(case.debtor.id),
                    'started_at': api.midnight(case.date)}))
        return cases

    @classmethod
    def write(cls, *args):
        """case_step_performed as a case moves a step (the run or by hand),
        case_to_bailiff when handed over, case_paid when closed paid."""
        changes = write_with_changes(Case, cls, args)
        for state, ids in changes.items():
            if not ids:
                continue
            cases = cls.browse(ids)
            if state in CASE_STEP_NAMES:
                emit_records('case_step_performed', cases,
                    lambda case: dict(case_payload(case), step={
                            'name': CASE_STEP_NAMES[case.state],
                            'performed_on': _entities().midnight(
                                case.state_date)}))
            elif state == 'handed_over':
                emit_records('case_to_bailiff', cases, case_payload)
            elif state == 'closed':
                emit_records('case_paid',
                    [c for c in cases if c.close_reason == 'paid'],
                    case_payload)

    @classmethod
    def open_for_items(cls, items, date=None):
        before = cls._items_without_case(
            {i.administration.id for i in items})
        cases = super().open_for_items(items, date=date)
        cls._emit_to_debt_collection(before)
        return cases

    @classmethod
    def open_due(cls, administration, date):
        before = cls._items_without_case([administration.id])
        count = super().open_due(administration, date)
        if count:
            cls._emit_to_debt_collection(before)
        return count

    @staticmethod
    def _items_without_case(administration_ids):
        """{administration: {item id}} of the open items without a case,
        where someone listens to invoice_to_debt_collection."""
        Delivery = Pool().get('payt.webhook.delivery')
        listening = Delivery.listened('invoice_to_debt_collection',
            list(administration_ids))
        if not listening:
            return {}
        item = Pool().get('payt.item').__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*item.select(item.administration, item.id,
                where=item.administration.in_(list(listening))
                & (item.case == Null) & (item.state == 'open')))
        result = {}
        for administration, id_ in cursor:
            result.setdefault(administration, set()).add(id_)
        return result

    @staticmethod
    def _emit_to_debt_collection(before):
        "invoice_to_debt_collection for those of `before` now in a case."
        if not before:
            return 0
        item = Pool().get('payt.item').__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*item.select(item.administration, item.id,
                where=item.administration.in_(list(before))
                & (item.case != Null)))
        moved = {}
        for administration, id_ in cursor:
            if id_ in before[administration]:
                moved.setdefault(administration, []).append(id_)
        invalidate_caches()
        return emit_items('invoice_to_debt_collection', moved,
            lambda item: {'credit_case': {'id': str(item.case)}})


class Message(metaclass=PoolMeta):
    __name__ = 'payt.message'

    @classmethod
    def create(cls, vlist):
        """A debtor's message (the portal, POST /v1/messages as the
        debtor): invoice_new_comment when about an invoice, else
        debtor_new_comment."""
        messages = super().create(vlist)
        api = _entities()
        incoming = [m for m in messages if m.direction == 'in']
        emit_records('invoice_new_comment', [m for m in incoming if m.item],
            lambda m: debtor_payload(m, invoice=api.invoice_entity(m.item),
                comment=api.message_entity(m)))
        emit_records('debtor_new_comment',
            [m for m in incoming if not m.item],
            lambda m: debtor_payload(m, comment=api.message_entity(m)))
        return messages


class OnlinePayment(metaclass=PoolMeta):
    __name__ = 'payt.online.payment'

    def _apply(self, mollie, client):
        """psp_transaction_successful when Mollie reports it paid,
        _refunded and _charged_back when those amounts grow."""
        before = (self.status, self.amount_refunded or 0,
            self.amount_charged_back or 0)
        super()._apply(mollie, client)
        events = []
        if self.status == 'paid' and before[0] != 'paid':
            events.append('psp_transaction_successful')
        if (self.amount_refunded or 0) > before[1]:
            events.append('psp_transaction_refunded')
        if (self.amount_charged_back or 0) > before[2]:
            events.append('psp_transaction_charged_back')
        api = _entities()
        for event in events:
            emit_records(event, [self], lambda p: debtor_payload(p,
                    psp_transaction=api.psp_entity(p)))


def email_payload(rows, **details):
    """An email's payload: its invoices (the communications' items), all
    of one debtor, and `details` of the email."""
    api = _entities()
    items = read_items(sorted({r['item'] for r in rows}))
    first = next(iter(items.values()))
    return {
        'administration': administration_ref(
            Pool().get('payt.administration')(first.administration.id)),
        'debtor': api.debtor_entity(first.debtor),
        'invoices': [api.invoice_entity(i) for i in items.values()],
        'email': details,
        }


class Communication(metaclass=PoolMeta):
    __name__ = 'payt.communication'

    @classmethod
    def record_all(cls, answers):
        "bundled_reminder_sent when an email of several invoices went out."
        count = super().record_all(answers)
        bundles = [job.ids for job, receipt, _ in answers
            if receipt and job.provider == 'smtp' and len(job.ids) > 1]
        if bundles:
            cls._emit_email('bundled_reminder_sent', bundles,
                lambda rows: {'recipient': rows[0]['recipient'],
                    'sent_at': _entities().timestamp(rows[0]['sent_at'])})
        return count

    @classmethod
    def process_bounce(cls, raw):
        "email_bounced, once per email, when a bounce fails it."
        from .communication import parse_dsn
        message = email.message_from_bytes(raw, policy=email.policy.default)
        action, _, message_ids = parse_dsn(message)
        before = {}
        if action == 'failed' and message_ids:
            table = cls.__table__()
            cursor = Transaction().connection.cursor()
            cursor.execute(*table.select(table.id, table.state,
                    where=table.message_id.in_(list(message_ids))))
            before = dict(cursor)
        found = super().process_bounce(raw)
        emails = {}
        for communication in found:
            if (communication.state == 'failed'
                    and before.get(communication.id, 'failed') != 'failed'):
                emails.setdefault(communication.message_id, []).append(
                    communication.id)
        if emails:
            cls._emit_email('email_bounced', list(emails.values()),
                lambda rows: {'recipient': rows[0]['recipient'],
                    'reason': rows[0]['error']})
        return found

    @classmethod
    def _emit_email(cls, event, id_groups, fields_of):
        """`event` per email: each group the ids of one email's rows;
        `fields_of(rows)` its own fields. Nothing is read unless someone
        listens (the sender records every email)."""
        Delivery = Pool().get('payt.webhook.delivery')
        with without_check_access():
            if not Pool().get('payt.webhook').search([], limit=1):
                return
            rows = {r['id']: r for r in cls.read(
                    [i for g in id_groups for i in g],
                    ['item', 'item.administration', 'recipient', 'sent_at',
                        'error'])}
        by_administration = {}
        for ids in id_groups:
            group = [rows[i] for i in ids]
            by_administration.setdefault(
                group[0]['item.']['administration'], []).append(group)
        for administration, groups in by_administration.items():
            Delivery.emit(event, administration, lambda: [
                    email_payload(g, **fields_of(g)) for g in groups])
