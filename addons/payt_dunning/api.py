# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The Payt-compatible REST API v1, served by the Tryton server.

Base URL B = http://<host>:8000/<database>/api, so that a partner package
written for Payt sends exactly its paths: B + /v1/invoices. Bearer tokens are
the static tokens of api_token.py. Each request runs in two transactions:
the first authenticates and counts the request for the rate limit (committed
even when the work fails), the second does the work as the token's user,
within the administration's company, so access rights and record rules
apply as in the web client. Writes go through import_batch, the one bulk
entry point; block and resume through the pauses; messages through their
buttons.

Shapes follow payt-openapi-v1.json (data/api-openapi-v1.json is the part of
it we serve): money as strings with two decimals, timestamps UTC ISO 8601,
cursor paging, per-record write results, 422 for a malformed request (and
nothing is processed), {"code", "message"} for 401/403/404/422/429."""
import datetime
import json
import os
import uuid
from decimal import Decimal

from werkzeug.wrappers import Response

from trytond.config import config
from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError
from trytond.pool import Pool
from trytond.protocols.wrappers import with_pool, with_transaction
from trytond.transaction import Transaction
from trytond.wsgi import app

from .importer import DEBTOR_FIELDS, BatchImporter, Validator

PREFIX = '/<database_name>/api'
MAX_BODY = 16 * 1024 * 1024
MAX_RECORDS = 1000
PER_PAGE, MAX_PER_PAGE = 100, 500
DOCUMENT = os.path.join(os.path.dirname(__file__), 'data',
    'api-openapi-v1.json')
PAUSE_REASON = "Blocked through the API"
PAUSE_CAUSE = 'api'


def base_url(database=None):
    database = database or Transaction().database.name
    host = config.get('payt', 'portal_url',
        default='http://127.0.0.1:8000').rstrip('/')
    return '%s/%s/api' % (host, database)


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def malformed(message):
    return ApiError(422, 'unprocessable_entity', message)


def forbidden(message):
    return ApiError(403, 'forbidden', message)


def not_found(message):
    return ApiError(404, 'not_found', message)


def json_response(body, status=200):
    return Response(json.dumps(body), status=status,
        content_type='application/json')


# --------------------------------------------------------------- formats

def money(value):
    return None if value is None else str(
        Decimal(value).quantize(Decimal('0.01')))


def timestamp(value):
    """Tryton stores naive UTC datetimes. Microseconds are kept: a client
    passes the last updated_at back as updated_after, and a batch writes
    many records within one second."""
    return None if value is None else value.isoformat() + 'Z'


def day(value):
    return value.isoformat() if value else None


def updated(record):
    return timestamp(record.write_date or record.create_date)


# -------------------------------------------------------------- requests

class Access:
    "What the bearer token allows, read in the gate transaction."

    def __init__(self, token):
        self.token = token.id
        self.user = token.user.id
        self.company = token.company.id
        self.administration = token.administration.id
        granted = token.granted()
        self.administrations = [a.id for a in granted]
        # The record rules see the companies of the user's current
        # company: here the token's (an OAuth grant: all it covers), while
        # the user still belongs to them.
        mine = {c.id for c in token.user.companies}
        self.companies = sorted({a.company.id for a in granted} & mine)
        if self.company not in mine:
            self.companies = []

    def context(self):
        "As the web client's RPC: access rights and record rules checked."
        return {'company': self.company, '_companies': self.companies,
            '_check_access': True}


def _gate(request, pool, scope):
    Token = pool.get('payt.api.token')
    header = request.headers.get('Authorization', '')
    kind, _, value = header.partition(' ')
    if kind.lower() != 'bearer' or not value.strip():
        raise ApiError(401, 'unauthorized',
            "Missing bearer token in the Authorization header")
    token = Token.find(value.strip(), requested_administration(request))
    if not token:
        raise ApiError(401, 'unauthorized', "Invalid or revoked token")
    if token.over_rate_limit():
        return None
    if scope not in token.scope_list:
        raise forbidden("Missing permission: %s" % scope)
    return Access(token)


def requested_administration(request):
    "The administration_id of the query or the body, if any."
    if request.args.get('administration_id'):
        return request.args['administration_id']
    try:
        return body_of(request).get('administration_id')
    except ApiError:
        return None


def endpoint(path, method, scope):
    """Register a handler(request, pool, access, **kwargs) -> (body, status)
    at B + path."""
    def decorator(handler):
        def gate(request, pool):
            # Committed on its own: the request counts for the rate limit
            # whatever happens to the work.
            transaction = with_transaction(readonly=False)(
                lambda request, pool: _gate(request, pool, scope))
            return transaction(request, pool)

        def work(request, pool, access, kwargs):
            def run(request, pool):
                return handler(request, pool, access, **kwargs)
            return with_transaction(readonly=method == 'GET',
                user=access.user, context=access.context())(run)(
                request, pool)

        def view(request, pool, **kwargs):
            try:
                access = gate(request, pool)
                if access is None:
                    raise ApiError(429, 'too_many_requests',
                        "Rate limit exceeded: at most 10 requests per "
                        "second per token")
                body, status = work(request, pool, access, kwargs)
            except ApiError as error:
                body, status = {'code': error.code,
                    'message': error.message}, error.status
            except AccessError as error:
                body, status = {'code': 'forbidden',
                    'message': error.message}, 403
            except UserError as error:
                body, status = {'code': 'unprocessable_entity',
                    'message': error.message}, 422
            return json_response(body, status)
        view.__name__ = 'api_%s_%s' % (method.lower(),
            path.strip('/').replace('/', '_').replace('<', '').replace(
                '>', '').replace(':', '_'))
        app.route(PREFIX + path, methods=[method])(with_pool(view))
        return handler
    return decorator


def body_of(request, lists=()):
    """The JSON object of the request, or 422. The spec also allows a form
    (application/x-www-form-urlencoded; the only body it lists for block
    and resume): flat fields, and the `lists` as name[]=a&name[]=b."""
    if (request.content_length or 0) > MAX_BODY:
        raise malformed("The request body is too large")
    # The gate reads administration_id first: parse a large batch once.
    parsed = request.environ.get('payt.api.body')
    if parsed is not None and not lists:
        return parsed
    if request.mimetype == 'application/x-www-form-urlencoded':
        form = request.form
        body = {k: form.get(k) for k in form if not k.endswith(']')}
        for name in lists:
            values = form.getlist(name + '[]') or form.getlist(name)
            if values:
                body[name] = values
        return body
    try:
        body = json.loads(request.get_data(cache=True) or b'null')
    except ValueError as error:
        raise malformed("The body is not valid JSON: %s" % error)
    if not isinstance(body, dict):
        raise malformed("The body must be a JSON object")
    request.environ['payt.api.body'] = body
    return body


def records_of(body, key):
    records = body.get(key)
    if not isinstance(records, list) or not records:
        raise malformed("%s must be a non-empty list" % key)
    if len(records) > MAX_RECORDS:
        raise malformed("%s has %s records, at most %s allowed"
            % (key, len(records), MAX_RECORDS))
    if not all(isinstance(r, dict) for r in records):
        raise malformed("every element of %s must be an object" % key)
    return records


def administration_of(pool, access, value):
    """The token's administration, when the request names it; read with
    the user's rights (the record rules keep it to the company)."""
    if value in (None, ''):
        raise malformed("administration_id is required")
    if str(value) != str(access.administration):
        raise forbidden("No access to administration %s" % value)
    Administration = pool.get('payt.administration')
    administration = Administration(access.administration)
    Administration.read([administration.id], ['company'])
    return administration


def write_request(request, pool, access, key, lock=True):
    """A bulk write's records (the body's `key` list, or 422) and its
    administration, locked for the work unless lock is False (writes that
    do not go through import_batch): (administration, records)."""
    body = body_of(request)
    records = records_of(body, key)
    administration = administration_of(pool, access,
        body.get('administration_id'))
    if lock:
        writing(administration)
    return administration, records


def writing(administration):
    """Lock the administration before the work, as import_batch will:
    Tryton takes a lock by restarting the transaction, so taking it first
    restarts before the batch is validated rather than after."""
    administration.__class__.lock([administration])
    return administration


def fields_of(request):
    'The top-level names of the fields parameter {"only": [...]}.'
    value = request.args.get('fields')
    if not value:
        return None
    try:
        only = json.loads(value)['only']
        return {f if isinstance(f, str) else next(iter(f)) for f in only}
    except (ValueError, KeyError, TypeError, StopIteration):
        raise malformed('fields must be JSON like {"only": ["id"]}')


def select(entity, only):
    if only is None:
        return entity
    return {k: v for k, v in entity.items() if k in only}


def page(request, Model, domain, entity):
    "One page of Model by id after the cursor; pagination.cursor if more."
    args = request.args
    try:
        per_page = int(args.get('per_page', PER_PAGE))
        assert 1 <= per_page <= MAX_PER_PAGE
    except (ValueError, AssertionError):
        raise malformed("per_page must be a number from 1 to %s"
            % MAX_PER_PAGE)
    domain = list(domain)
    cursor = args.get('cursor')
    if cursor:
        if not cursor.isdigit():
            raise malformed("cursor must be a value of pagination.cursor")
        domain.append(('id', '>', int(cursor)))
    if args.get('updated_after'):
        since = parse_timestamp(args['updated_after'], 'updated_after')
        domain.append(['OR', ('write_date', '>', since),
                [('write_date', '=', None), ('create_date', '>', since)]])
    only = fields_of(request)
    records = Model.search(domain, order=[('id', 'ASC')], limit=per_page)
    more = len(records) == per_page
    return {
        'data': [select(entity(r), only) for r in records],
        'pagination': {'cursor': str(records[-1].id) if more else None},
        }, 200


def parse_timestamp(value, name):
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise malformed("%s must be an ISO 8601 timestamp" % name)
    if moment.tzinfo:
        moment = moment.astimezone(datetime.timezone.utc).replace(
            tzinfo=None)
    return moment


def id_list(request, name):
    values = [v.strip() for v in request.args.get(name, '').split(',')
        if v.strip()]
    if name == 'ids' and not all(v.isdigit() for v in values):
        raise malformed("ids must be a comma separated list of ids")
    return values


def listing(request, pool, access, model, entity, filters=None,
        domain=()):
    """One page of the administration's records of model: `ids` and the
    comma separated list parameters of filters ({parameter: field}), plus
    domain; the paging of page()."""
    administration = administration_of(pool, access,
        request.args.get('administration_id'))
    domain = [('administration', '=', administration.id)] + list(domain)
    ids = id_list(request, 'ids')
    if ids:
        domain.append(('id', 'in', [int(i) for i in ids]))
    for name, field in (filters or {}).items():
        values = id_list(request, name)
        if values:
            if name.endswith('_ids') and not all(v.isdigit() for v in values):
                raise malformed("%s must be a comma separated list of ids"
                    % name)
            if name.endswith('_ids'):
                values = [int(v) for v in values]
            domain.append((field, 'in', values))
    return page(request, pool.get(model), domain, entity)


def write_result(count, errors, warnings, status=201):
    return {'success': True, 'count': count, 'errors': errors,
        'warnings': warnings}, status


# ------------------------------------------------------- administrations

def administration_entity(administration):
    company = administration.company
    party = company.party
    address = party.addresses[0] if party.addresses else None
    paused = administration.follow_up != 'active'
    return {
        'id': str(administration.id),
        'name': administration.name,
        'internal_name': administration.name,
        'status': 'active',
        'email_address': party.email if hasattr(party, 'email') else None,
        'contact_name': None,
        'commercial_registration_number': None,
        'country_code': (address.country.code if address and
            address.country else None),
        'city': address.city if address else None,
        'street_name': address.street if address else None,
        'house_number': None,
        'postal_code': address.postal_code if address else None,
        'vat_number': None,
        'timezone': getattr(company, 'timezone', None) or 'Europe/Amsterdam',
        'currency_code': company.currency.code,
        'administration_url': None,
        'paused_at': timestamp(administration.write_date) if paused else None,
        }


@endpoint('/v1/administrations', 'GET', 'administrations:read')
def list_administrations(request, pool, access):
    Administration = pool.get('payt.administration')
    return page(request, Administration,
        [('id', 'in', access.administrations)], administration_entity)


@endpoint('/v1/administrations/<administration_id>', 'GET',
    'administrations:read')
def get_administration(request, pool, access, administration_id):
    administration = administration_of(pool, access, administration_id)
    return select(administration_entity(administration),
        fields_of(request)), 200


# --------------------------------------------------------------- debtors

def debtor_entity(debtor):
    return {
        'id': str(debtor.id),
        'administration_id': str(debtor.administration.id),
        'debtor_number': debtor.external_id,
        'debtor_identifier': None,
        'name': debtor.name,
        'coc_number': debtor.coc_number,
        'vat_number': debtor.vat_number,
        'language_code': debtor.language,
        'primary_email_address': debtor.email,
        'reminder_email_address': debtor.email,
        'sms_phone_number': debtor.phone,
        'call_phone_number': debtor.phone,
        'postal_address': {
            'street_1': debtor.street, 'street_2': None,
            'postal_code': debtor.postal_code, 'city': debtor.city,
            'region': None, 'country_code': debtor.country},
        'book_open_amount': money(debtor.open_amount),
        'paused_at': None,
        'updated_at': updated(debtor),
        }


# Payt's debtor fields -> the batch's (docs/IMPORT-BATCH.md)
DEBTOR_MAP = {'debtor_number': 'external_id', 'name': 'name',
    'country_code': 'country', 'language_code': 'language',
    'vat_number': 'vat_number', 'coc_number': 'coc_number'}
DEBTOR_IGNORED = {'debtor_identifier', 'is_company'}


def debtor_record(record, stored):
    "The batch debtor of a Payt debtor, keeping what Payt does not send."
    values = {f: getattr(stored, f) for f in DEBTOR_FIELDS} if (
        stored) else {}
    for payt, ours in DEBTOR_MAP.items():
        if payt in record:
            values[ours] = record[payt]
    if 'is_company' in record:
        values['kind'] = 'business' if record['is_company'] else 'consumer'
    if isinstance(values.get('language'), str):
        values['language'] = values['language'].lower()[:2]
    return values


def ignored_fields(record, mapped, ignored):
    return ["field %s is not stored" % f for f in sorted(record)
        if f not in mapped and f not in ignored]


def stored_by_external_id(Model, administration, external_ids):
    return {r.external_id: r for r in Model.search([
                ('administration', '=', administration.id),
                ('external_id', 'in', list(external_ids))])}


def import_valid(pool, administration, kind, records, validate):
    """Validate each record on its own with the importer's rules, import
    the valid ones in one batch; (count, errors by key)."""
    Administration = pool.get('payt.administration')
    Currency = pool.get('currency.currency')
    currencies = {c.code: (c.id, c.digits) for c in Currency.search([])}
    valid, errors, seen = [], {}, set()
    for key, record in records:
        if record['external_id'] in seen:
            errors.setdefault(key, []).append(
                "appears more than once in the request")
            continue
        seen.add(record['external_id'])
        validator = Validator(currencies)
        validate(validator, record, currencies)
        if validator.errors:
            errors.setdefault(key, []).extend(validator.errors)
        else:
            valid.append(record)
    if valid:
        Administration.import_batch(administration.id, {kind: valid})
    return len(valid), errors


@endpoint('/v1/debtors', 'POST', 'debtors:write')
def post_debtors(request, pool, access):
    Debtor = pool.get('payt.debtor')
    administration, records = write_request(request, pool, access,
        'debtors')
    stored = stored_by_external_id(Debtor, administration,
        [r.get('debtor_number') for r in records
            if isinstance(r.get('debtor_number'), str)])
    importer = BatchImporter(administration)
    batch, errors, warnings = [], {}, {}
    for index, record in enumerate(records):
        key = str(record.get('debtor_number') or '#%s' % index)
        if not isinstance(record.get('debtor_number'), str) or not record[
                'debtor_number']:
            errors[key] = ["debtor_number is required"]
            continue
        batch.append((key, debtor_record(record,
                    stored.get(record['debtor_number']))))
        notes = ignored_fields(record, DEBTOR_MAP, DEBTOR_IGNORED)
        if notes:
            warnings[key] = notes
    count, invalid = import_valid(pool, administration, 'debtors', batch,
        lambda v, r, c: importer._validate_debtors(v, [r]))
    errors.update(invalid)
    return write_result(count, errors, warnings)


@endpoint('/v1/debtors', 'GET', 'debtors:read')
def list_debtors(request, pool, access):
    return listing(request, pool, access, 'payt.debtor', debtor_entity,
        {'debtor_numbers': 'external_id'})


def one(pool, model, access, request, id_, number_type,
        administration_id=None):
    """The record by internal id or, with identifier_type, by its number
    (number_type None: by id only)."""
    Model = pool.get(model)
    administration = administration_of(pool, access,
        administration_id or request.args.get('administration_id'))
    domain = [('administration', '=', administration.id)]
    kind = request.args.get('identifier_type')
    if kind and kind == number_type:
        domain.append(('external_id', '=', id_))
    elif kind:
        raise malformed("identifier_type must be %s or empty"
            % (number_type or 'id'))
    elif id_.isdigit():
        domain.append(('id', '=', int(id_)))
    else:
        raise not_found("No record %s" % id_)
    records = Model.search(domain, limit=1)
    if not records:
        raise not_found("No record %s in administration %s"
            % (id_, administration.id))
    return records[0]


@endpoint('/v1/debtors/<id_>', 'GET', 'debtors:read')
def get_debtor(request, pool, access, id_):
    debtor = one(pool, 'payt.debtor', access, request, id_, 'debtor_number')
    return select(debtor_entity(debtor), fields_of(request)), 200


# -------------------------------------------------------------- invoices

def invoice_entity(item):
    paused = item.follow_up != 'active'
    return {
        'id': str(item.id),
        'administration_id': str(item.administration.id),
        'debtor_id': str(item.debtor.id),
        'debtor_number': item.debtor.external_id,
        'invoice_number': item.number or item.external_id,
        'invoice_identifier': None,
        'currency_code': item.currency.code,
        'description': item.description,
        'payment_method': 'unknown',
        'invoice_date': day(item.invoice_date),
        'due_date': day(item.due_date),
        'payment_date': day(item.paid_date),
        'total_amount': money(item.amount),
        'open_amount': money(item.open_amount),
        'book_total_amount': money(item.amount),
        'book_open_amount': money(item.open_amount),
        'administration_costs_total': '0.00',
        'administration_costs_open': '0.00',
        'paused_by_user': paused,
        'flow_code': item.step.rec_name if item.step else None,
        'updated_at': updated(item),
        }


INVOICE_MAP = {'invoice_number': 'external_id', 'debtor_number': 'debtor',
    'description': 'description', 'invoice_date': 'invoice_date',
    'due_date': 'due_date', 'currency_code': 'currency',
    'amount_total': 'amount', 'amount_open': 'open_amount'}
INVOICE_REQUIRED = ['currency_code', 'invoice_number', 'invoice_date',
    'due_date', 'book_amount_total', 'book_amount_open', 'amount_open',
    'amount_total', 'debtor_number']
INVOICE_IGNORED = {'invoice_identifier', 'debtor_identifier',
    'book_amount_total', 'book_amount_open', 'payments'}


def invoice_record(record):
    values = {ours: record[payt] for payt, ours in INVOICE_MAP.items()
        if payt in record}
    values['number'] = record.get('invoice_number')
    return values


def payments_of(record):
    "The invoice's payments as batch payments; keyed per administration."
    payments = []
    for index, payment in enumerate(record.get('payments') or []):
        if not isinstance(payment, dict):
            continue
        payments.append({
                'external_id': payment.get('origin_identifier')
                or '%s:%s' % (record.get('invoice_number'), index),
                'item': record.get('invoice_number'),
                'date': payment.get('payment_date')
                or datetime.date.today().isoformat(),
                'amount': payment.get('amount')})
    return payments


@endpoint('/v1/invoices', 'POST', 'invoices:write')
def post_invoices(request, pool, access):
    administration, records = write_request(request, pool, access,
        'invoices')
    return upsert_invoices(pool, administration,
        [(invoice_key(r, i), r) for i, r in enumerate(records)], {})


@endpoint('/v1/invoices', 'PATCH', 'invoices:write')
def patch_invoices(request, pool, access):
    """Update stored invoices: the fields sent, the others as stored; an
    unknown invoice_number is an error of that record (PATCH creates
    nothing). The merged invoices take the path of POST."""
    Item = pool.get('payt.item')
    administration, records = write_request(request, pool, access,
        'invoices')
    stored = stored_by_external_id(Item, administration,
        [r.get('invoice_number') for r in records
            if isinstance(r.get('invoice_number'), str)])
    merged, errors = [], {}
    for index, record in enumerate(records):
        key = invoice_key(record, index)
        item = stored.get(record.get('invoice_number'))
        if item is None:
            errors[key] = ["invoice_number %s is not an invoice of the "
                "administration" % record.get('invoice_number')]
            continue
        merged.append((key, dict(stored_invoice(item), **record,
                    **open_amount_payment(item, record))))
    if not merged:
        return write_result(0, errors, {}, status=200)
    body, _ = upsert_invoices(pool, administration, merged, errors)
    return body, 200


def open_amount_payment(item, record):
    """Payt creates a payment when a PATCH changes the open amount without
    payments: {'payments': [it]}, or {}. Its amount is the change of what
    is paid (total - open), so a total corrected with the open amount (a
    credit) is no payment; an increase is a negative one (a reversal). A
    new origin identifier each time: the importer updates a payment whose
    identifier it knows."""
    if record.get('payments') or 'amount_open' not in record:
        return {}
    try:
        total = Decimal(str(record.get('amount_total', item.amount)))
        open_amount = Decimal(str(record['amount_open']))
        if not (total.is_finite() and open_amount.is_finite()):
            return {}
    except ArithmeticError:
        return {}  # not a number: the validator reports it
    paid = (total - open_amount) - (item.amount - item.open_amount)
    if open_amount == item.open_amount or not paid:
        return {}
    return {'payments': [{'origin_identifier': 'api:' + uuid.uuid4().hex,
                'amount': money(paid)}]}


def invoice_key(record, index):
    return str(record.get('invoice_number') or '#%s' % index)


def stored_invoice(item):
    "A stored item as the Payt invoice that would have written it."
    return {
        'invoice_number': item.external_id,
        'debtor_number': item.debtor.external_id,
        'currency_code': item.currency.code,
        'description': item.description,
        'invoice_date': day(item.invoice_date),
        'due_date': day(item.due_date),
        'amount_total': money(item.amount),
        'amount_open': money(item.open_amount),
        'book_amount_total': money(item.amount),
        'book_amount_open': money(item.open_amount),
        }


def upsert_invoices(pool, administration, records, errors):
    """Import the (key, Payt invoice) records through import_batch, each
    validated alone first; the write result, errors merged in."""
    Debtor = pool.get('payt.debtor')
    importer = BatchImporter(administration)
    # By SQL, as the importer reads them: building 1,000 ORM records costs
    # more than the import (ModelStorage checks every id it is given).
    known = set(importer._stored(Debtor, [],
            {r.get('debtor_number') for _, r in records
                if isinstance(r.get('debtor_number'), str)}))
    batch, payments, warnings = [], [], {}
    for key, record in records:
        missing = [f for f in INVOICE_REQUIRED if record.get(f) in (
                None, '')]
        if missing:
            errors[key] = ["%s is required" % f for f in missing]
            continue
        batch.append((key, invoice_record(record)))
        payments.extend(payments_of(record))
        notes = ignored_fields(record, INVOICE_MAP, INVOICE_IGNORED)
        if notes:
            warnings[key] = notes

    def validate(v, record, currencies):
        importer._validate_items(v, [record], known, currencies)
    count, invalid = import_valid(pool, administration, 'items', batch,
        validate)
    errors.update(invalid)
    valid = {r['external_id'] for _, r in batch} - set(invalid)
    payments = [p for p in payments if p['item'] in valid]
    if payments:
        _, invalid = import_valid(pool, administration, 'payments',
            [(p['item'], p) for p in payments],
            lambda v, r, c: importer._validate_payments(v, [r]))
        for key, messages in invalid.items():
            warnings.setdefault(key, []).extend(messages)
    return write_result(count, errors, warnings)


@endpoint('/v1/invoices', 'GET', 'invoices:read')
def list_invoices(request, pool, access):
    domain = []
    paid = request.args.get('paid')
    if paid in ('true', 'false'):
        domain.append(('state', '=' if paid == 'true' else '!=', 'paid'))
    elif paid is not None:
        raise malformed("paid must be true or false")
    return listing(request, pool, access, 'payt.item', invoice_entity,
        {'invoice_numbers': 'external_id',
            'debtor_numbers': 'debtor.external_id'}, domain)


@endpoint('/v1/invoices/<id_>', 'GET', 'invoices:read')
def get_invoice(request, pool, access, id_):
    item = one(pool, 'payt.item', access, request, id_, 'invoice_number')
    return select(invoice_entity(item), fields_of(request)), 200


def items_named(pool, access, body):
    "The items named by invoice_numbers; (items, errors)."
    Item = pool.get('payt.item')
    administration = administration_of(pool, access,
        body.get('administration_id'))
    numbers = body.get('invoice_numbers', [])
    identifiers = body.get('invoice_identifiers', [])
    for name, values in [('invoice_numbers', numbers),
            ('invoice_identifiers', identifiers)]:
        if not isinstance(values, list) or len(values) > MAX_RECORDS or (
                not all(isinstance(v, str) for v in values)):
            raise malformed("%s must be a list of at most %s strings"
                % (name, MAX_RECORDS))
    if not numbers and not identifiers:
        raise malformed("invoice_numbers is required")
    items = list(stored_by_external_id(Item, administration,
            numbers).values())
    found = {i.external_id for i in items}
    errors = {}
    missing = [n for n in numbers if n not in found] + identifiers
    if missing:
        errors['not_found'] = missing
    return items, errors


@endpoint('/v1/invoices/block', 'PATCH', 'invoices:write')
def block_invoices(request, pool, access):
    Pause = pool.get('payt.pause')
    items, errors = items_named(pool, access, body_of(request,
            lists=('invoice_numbers', 'invoice_identifiers')))
    to_block = [i for i in items if not api_pauses(pool, i)]
    # As the Pause wizard: the scope allows it on items read through the
    # rules; pauses are not writable records of their own for the caller.
    with Transaction().set_context(_check_access=False):
        Pause.hold(to_block, 'pause', PAUSE_REASON, automatic=PAUSE_CAUSE)
    return write_result(len(items), errors, {}, status=200)


@endpoint('/v1/invoices/resume', 'PATCH', 'invoices:write')
def resume_invoices(request, pool, access):
    Pause = pool.get('payt.pause')
    items, errors = items_named(pool, access, body_of(request,
            lists=('invoice_numbers', 'invoice_identifiers')))
    with Transaction().set_context(_check_access=False):
        Pause.lift([p for i in items for p in api_pauses(pool, i)])
    return write_result(len(items), errors, {}, status=200)


def api_pauses(pool, item):
    "The active pauses of the item made through the API."
    Pause = pool.get('payt.pause')
    return Pause.search([('item', '=', item.id), ('state', '=', 'active'),
            ('automatic', '=', PAUSE_CAUSE)])


# -------------------------------------------------------------- payments

def payment_entity(payment):
    return {
        'id': str(payment.id),
        'administration_id': str(payment.administration.id),
        'invoice_id': str(payment.item.id) if payment.item else None,
        'total_amount': money(payment.amount),
        'total_book_amount': money(payment.amount),
        'payment_date': day(payment.date),
        'payment_method': None,
        'description': None,
        'updated_at': updated(payment),
        }


@endpoint('/v1/payments', 'GET', 'payments:read')
def list_payments(request, pool, access):
    return listing(request, pool, access, 'payt.payment', payment_entity,
        {'invoice_numbers': 'item.external_id'})


# ------------------------------------------------------ deleted invoices

DELETED_DAYS = 90


def deleted_entity(event):
    item = event.item
    return {
        'id': str(item.id),
        'administration_id': str(item.administration.id),
        'debtor_id': str(item.debtor.id),
        'invoice_number': item.number or item.external_id,
        'origin_identifier': item.external_id,
        'deleted_at': timestamp(event.create_date),
        }


@endpoint('/v1/invoices/deleted', 'GET', 'invoices:read')
def deleted_invoices(request, pool, access):
    """Items are never deleted: one the source no longer lists is closed
    (importer._close, the event msg_event_closed_not_open). Those closings
    of the last 90 days, of items still closed; paged by the event."""
    Event = pool.get('payt.event')
    administration = administration_of(pool, access,
        request.args.get('administration_id'))
    if not request.args.get('deleted_after'):
        raise malformed("deleted_after is required")
    since = max(parse_timestamp(request.args['deleted_after'],
            'deleted_after'), datetime.datetime.utcnow()
        - datetime.timedelta(days=DELETED_DAYS))
    domain = [('item.administration', '=', administration.id),
        ('item.state', '=', 'paid'),
        ('text_key', '=', 'msg_event_closed_not_open'),
        ('create_date', '>', since)]
    if request.args.get('deleted_before'):
        domain.append(('create_date', '<', parse_timestamp(
                    request.args['deleted_before'], 'deleted_before')))
    return page(request, Event, domain, deleted_entity)


# --------------------------------------------------------- payment plans

def midnight(value):
    "A date as the timestamp of its start (UTC)."
    return value.isoformat() + 'T00:00:00Z' if value else None


def user_entity(user):
    return {'id': str(user.id), 'name': user.name,
        'email_address': user.email} if user else None


def plan_entity(plan):
    ended = plan.state in ('cancelled', 'broken', 'completed')
    rejected = plan.state == 'cancelled' and not plan.start_datetime
    return {
        'id': str(plan.id),
        'administration_id': str(plan.administration.id),
        'debtor_id': str(plan.debtor.id),
        'active': plan.state == 'running',
        'auto_activated': False,
        'reason': plan.request_note,
        'proposed_at': timestamp(plan.create_date) if plan.requested
        else None,
        'approved_at': timestamp(plan.start_datetime),
        'rejected_at': updated(plan) if rejected else None,
        'rejected_by_user': user_entity(plan.write_uid) if rejected
        else None,
        'deactivated_at': midnight(plan.end_date) if ended and not rejected
        else None,
        'created_at': timestamp(plan.create_date),
        'updated_at': updated(plan),
        'public_url': None,
        'payment_terms': [{
                'id': str(term.id),
                'total_amount': money(term.amount),
                'amount_due': money(term.amount - (term.paid_amount or 0)),
                'due_date': day(term.due_date),
                'payment_date': None,
                } for term in sorted(plan.terms,
                key=lambda t: (t.due_date, t.id))],
        }


@endpoint('/v1/payment_plans', 'GET', 'payment_plans:read')
def list_plans(request, pool, access):
    return listing(request, pool, access, 'payt.plan', plan_entity,
        {'debtor_numbers': 'debtor.external_id'})


@endpoint('/v1/payment_plans/<id_>', 'GET', 'payment_plans:read')
def get_plan(request, pool, access, id_):
    plan = one(pool, 'payt.plan', access, request, id_, None)
    return select(plan_entity(plan), fields_of(request)), 200


def plan_terms(body):
    "The terms of the request as [(due_date, Decimal amount)], or 422."
    terms = body.get('terms')
    if not isinstance(terms, list) or not terms or len(terms) > 120:
        raise malformed("terms must be a list of 1 to 120 terms")
    result = []
    for term in terms:
        try:
            amount = Decimal(str(term['amount']))
            due = datetime.date.fromisoformat(term['due_date'])
        except (TypeError, KeyError, ValueError, ArithmeticError):
            raise malformed("every term needs amount (a number) and "
                "due_date (YYYY-MM-DD)")
        if not amount.is_finite():
            raise malformed("term amounts must be numbers")
        result.append((due, amount))
    return result


def plan_lines(pool, administration, body):
    "(debtor, lines) of the invoices and credit cases named, or 422."
    Item = pool.get('payt.item')
    Case = pool.get('payt.case')
    numbers = body.get('invoice_numbers') or []
    case_numbers = body.get('credit_case_numbers') or []
    for name, values in [('invoice_numbers', numbers),
            ('credit_case_numbers', case_numbers)]:
        if not isinstance(values, list) or not all(
                isinstance(v, str) for v in values):
            raise malformed("%s must be a list of strings" % name)
    if body.get('invoice_identifiers'):
        raise malformed("invoice_identifiers are not stored; "
            "use invoice_numbers")
    items = stored_by_external_id(Item, administration, numbers)
    cases = Case.search([('administration', '=', administration.id),
            ('id', 'in', [int(n) for n in case_numbers if n.isdigit()])])
    missing = [n for n in numbers if n not in items] + [
        n for n in case_numbers if n not in {str(c.id) for c in cases}]
    if missing:
        raise malformed("not found in the administration: %s"
            % ', '.join(missing))
    if not items and not cases:
        raise malformed("invoice_numbers or credit_case_numbers is required")
    debtors = {i.debtor for i in items.values()} | {c.debtor for c in cases}
    if len(debtors) != 1:
        raise malformed("a payment plan covers the invoices of one debtor")
    in_case = [i.external_id for i in items.values() if i.case]
    if in_case:
        raise malformed("invoices %s are part of a credit case: name the "
            "case" % ', '.join(in_case))
    lines = [{'item': i.id, 'amount': i.open_amount}
        for i in items.values()]
    lines += [{'case': c.id, 'amount': c.remaining_total} for c in cases]
    return debtors.pop(), lines


@endpoint('/v1/payment_plans', 'POST', 'payment_plans:write')
def post_plan(request, pool, access):
    """An approved (running) plan with the terms as sent, started as the
    Start button does: the terms must add up to what the lines cover."""
    Plan = pool.get('payt.plan')
    body = body_of(request)
    administration = administration_of(pool, access,
        body.get('administration_id'))
    terms = plan_terms(body)
    debtor, lines = plan_lines(pool, administration, body)
    plan, = Plan.create([{
                'company': administration.company.id,
                'administration': administration.id,
                'debtor': debtor.id,
                'number_of_terms': len(terms),
                'start_date': min(d for d, _ in terms),
                'frequency': 'custom', 'split': 'manual',
                'lines': [('create', lines)],
                'terms': [('create', [{'due_date': d, 'amount': a}
                            for d, a in terms])],
                }])
    Plan.start([plan])
    return plan_entity(Plan(plan.id)), 201


def plan_action(request, pool, access, id_, states, action):
    "The plan in one of states, after the workflow button action."
    Plan = pool.get('payt.plan')
    body = body_of(request) if request.content_length else {}
    if 'administration_id' not in body:
        body['administration_id'] = request.args.get('administration_id')
    administration_of(pool, access, body['administration_id'])
    plan = one(pool, 'payt.plan', access, request, id_, None,
        administration_id=body['administration_id'])
    if (plan.state, plan.requested) not in states:
        raise malformed("payment plan %s is %s" % (plan.id, plan.state))
    getattr(Plan, action)([plan])
    return select(plan_entity(Plan(plan.id)), fields_of(request)), 200


@endpoint('/v1/payment_plans/<id_>/approve', 'PATCH', 'payment_plans:write')
def approve_plan(request, pool, access, id_):
    "A plan the debtor proposed (in the portal) starts."
    return plan_action(request, pool, access, id_, [('draft', True)],
        'start')


@endpoint('/v1/payment_plans/<id_>/reject', 'PATCH', 'payment_plans:write')
def reject_plan(request, pool, access, id_):
    return plan_action(request, pool, access, id_, [('draft', True)],
        'cancel')


@endpoint('/v1/payment_plans/<id_>/deactivate', 'PATCH',
    'payment_plans:write')
def deactivate_plan(request, pool, access, id_):
    "A running plan ends: its pauses are lifted, the flow resumes."
    return plan_action(request, pool, access, id_,
        [('running', True), ('running', False)], 'cancel')


# -------------------------------------------------------------- messages

def message_entity(message):
    incoming = message.direction == 'in'
    return {
        'id': str(message.id),
        'administration_id': str(message.administration.id),
        'debtor_id': str(message.debtor.id),
        'invoice_id': str(message.item.id) if message.item else None,
        'credit_case_id': str(message.case.id) if message.case else None,
        'sender_type': 'debtor' if incoming else 'creditor',
        'subject': None,
        'content': message.body,
        'sent_at': None if incoming else timestamp(message.sent_at),
        'received_at': timestamp(message.sent_at) if incoming else None,
        'read_at': timestamp(message.read_at),
        'read_by_user': user_entity(message.read_by),
        'updated_at': updated(message),
        }


@endpoint('/v1/messages', 'GET', 'messages:read')
def list_messages(request, pool, access):
    return listing(request, pool, access, 'payt.message', message_entity,
        {'debtor_ids': 'debtor', 'invoice_ids': 'item',
            'credit_case_ids': 'case'})


@endpoint('/v1/messages/<id_>', 'GET', 'messages:read')
def get_message(request, pool, access, id_):
    message = one(pool, 'payt.message', access, request, id_, None)
    return select(message_entity(message), fields_of(request)), 200


def message_target(pool, administration, body):
    "{debtor, item, case} of the message, by number; 422 or 404."
    names = [n for n in ('invoice_number', 'credit_case_number',
            'debtor_number') if body.get(n)]
    if not names:
        raise malformed("debtor_number, invoice_number or "
            "credit_case_number is required")
    name = names[0]
    value = str(body[name])
    model, field = {'invoice_number': ('payt.item', 'external_id'),
        'credit_case_number': ('payt.case', 'id'),
        'debtor_number': ('payt.debtor', 'external_id')}[name]
    if field == 'id' and not value.isdigit():
        raise not_found("No credit case %s" % value)
    records = pool.get(model).search([
            ('administration', '=', administration.id),
            (field, '=', int(value) if field == 'id' else value)], limit=1)
    if not records:
        raise not_found("No %s %s in administration %s"
            % (name.replace('_number', ''), value, administration.id))
    record, = records
    return {'payt.item': lambda: {'debtor': record.debtor.id,
            'item': record.id},
        'payt.case': lambda: {'debtor': record.debtor.id, 'case': record.id},
        'payt.debtor': lambda: {'debtor': record.id}}[model]()


@endpoint('/v1/messages', 'POST', 'messages:write')
def post_message(request, pool, access):
    """A message to the debtor, as written in the client: on the item's
    timeline and emailed with the portal link. We keep one text: the
    subject is its first line."""
    Message = pool.get('payt.message')
    body = body_of(request)
    administration = administration_of(pool, access,
        body.get('administration_id'))
    message = body.get('message')
    if not isinstance(message, dict) or not all(
            isinstance(message.get(f), str) and message[f].strip()
            for f in ('subject', 'body')):
        raise malformed("message needs a subject and a body")
    values = message_target(pool, administration, body)
    record, = Message.create([dict(values,
                administration=administration.id, direction='out',
                body='%s\n\n%s' % (message['subject'].strip(),
                    message['body']))])
    return message_entity(Message(record.id)), 200


@endpoint('/v1/messages', 'PATCH', 'messages:write')
def patch_messages(request, pool, access):
    """Mark the debtor's messages read or unread, as the buttons of the
    client do: read resolves the attention "unread debtor message", unread
    raises it again. A message to the debtor is read in the portal, not
    here: an error of that record, as an unknown id."""
    Message = pool.get('payt.message')
    administration, records = write_request(request, pool, access,
        'messages', lock=False)
    errors, read = {}, {}
    for index, record in enumerate(records):
        id_ = record.get('id')
        key = str(id_ if id_ not in (None, '') else '#%s' % index)
        if isinstance(id_, bool) or not str(id_).isdigit() or len(
                str(id_)) > 18:
            errors[key] = ["id must be the id of a message"]
        elif not isinstance(record.get('read'), bool):
            errors[key] = ["read must be true or false"]
        elif int(id_) in read:
            errors[key] = ["appears more than once in the request"]
        else:
            read[int(id_)] = (key, record['read'])
    messages = Message.search([('administration', '=', administration.id),
            ('id', 'in', list(read))])
    for id_ in set(read) - {m.id for m in messages}:
        errors[read[id_][0]] = ["message %s is not a message of the "
            "administration" % id_]
    for message in messages:
        if message.direction != 'in':
            errors[read[message.id][0]] = ["message %s was sent to the "
                "debtor: only the debtor's messages are marked read"
                % message.id]
    incoming = [m for m in messages if m.direction == 'in']
    Message.mark_read([m for m in incoming
            if read[m.id][1] and not m.seen])
    Message.mark_unread([m for m in incoming
            if not read[m.id][1] and m.seen])
    return write_result(len(incoming), errors, {}, status=200)


# ---------------------------------------------------------- credit cases

def case_entity(case):
    letters = {l.step: l.date for l in case.letters}
    costs = case.costs_amount or 0
    interest = case.interest_amount or 0
    lines = Pool().get('payt.plan.line').search([('case', '=', case.id),
            ('plan.state', '=', 'running')], limit=1)
    plan = str(lines[0].plan.id) if lines else None
    return {
        'id': str(case.id),
        'administration_id': str(case.administration.id),
        'debtor_id': str(case.debtor.id),
        'case_number': str(case.id),
        'credit_case_number': case.rec_name,
        'currency_code': case.company.currency.code,
        'total_amount': money(case.principal + costs + interest),
        'open_amount': money(case.remaining_total),
        'debt_collection_costs': money(costs),
        'interest_costs': money(interest),
        'open_interest_and_collection_costs': money(
            (case.remaining_costs or 0) + (case.remaining_interest or 0)),
        'payment_plan_id': plan,
        'active_payment_plan_id': plan,
        'started_at': midnight(case.date),
        'notice_of_default_at': midnight(letters.get('notice_of_default')),
        'forwarded_to_bailiff_at': midnight(case.state_date)
        if case.state == 'handed_over' else None,
        'deactivated_at': midnight(case.state_date)
        if case.state == 'closed' else None,
        'paused_at': None,
        'labels': [],
        'public_url': None,
        'updated_at': updated(case),
        }


@endpoint('/v1/credit_cases', 'GET', 'credit_cases:read')
def list_cases(request, pool, access):
    return listing(request, pool, access, 'payt.case', case_entity)


@endpoint('/v1/credit_cases/<id_>', 'GET', 'credit_cases:read')
def get_case(request, pool, access, id_):
    case = one(pool, 'payt.case', access, request, id_, None)
    return select(case_entity(case), fields_of(request)), 200


# ------------------------------------------------------ psp transactions

# Mollie's statuses -> Payt's; a paid payment refunded or charged back
# reports that instead (psp_status).
PSP_STATUS = {'created': 'pending', 'open': 'pending',
    'pending': 'processing', 'authorized': 'processing', 'paid': 'paid',
    'failed': 'failed', 'expired': 'cancelled', 'canceled': 'cancelled'}
PSP_METHOD = {'directdebit': 'direct_debit'}


def psp_status(payment):
    if payment.status == 'paid' and payment.amount_charged_back:
        return 'charged_back'
    if payment.status == 'paid' and payment.amount_refunded:
        return 'refunded'
    return PSP_STATUS.get(payment.status, 'pending')


def psp_status_domain(statuses):
    "The domain of Payt statuses, on Mollie's status and amounts."
    none = lambda f: ['OR', (f, '=', None), (f, '=', 0)]
    clauses = ['OR']
    for status in statuses:
        ours = [k for k, v in PSP_STATUS.items() if v == status]
        if status == 'charged_back':
            clauses.append([('status', '=', 'paid'),
                    ('amount_charged_back', '>', 0)])
        elif status == 'refunded':
            clauses.append([('status', '=', 'paid'),
                    ('amount_refunded', '>', 0),
                    none('amount_charged_back')])
        elif status == 'paid':
            clauses.append([('status', '=', 'paid'),
                    none('amount_refunded'), none('amount_charged_back')])
        elif ours:
            clauses.append(('status', 'in', ours))
        else:
            raise malformed("unknown status %s" % status)
    return [clauses]


def psp_entity(payment):
    amount = money(payment.amount)
    return {
        'id': str(payment.id),
        'administration_id': str(payment.administration.id),
        'debtor_id': str(payment.debtor.id),
        'invoice_ids': [str(l.item.id) for l in payment.lines],
        'currency_code': payment.currency.code,
        'amount': amount,
        'book_amount': amount,
        'payment_method': PSP_METHOD.get(payment.method, payment.method)
        or 'unknown',
        'status': psp_status(payment),
        'reversal_code': None,
        'bank_account_name': None,
        'bank_account_number': None,
        'paid_at': timestamp(payment.paid_at),
        'updated_at': updated(payment),
        }


@endpoint('/v1/psp_transactions', 'GET', 'psp_transactions:read')
def list_psp(request, pool, access):
    domain = []
    statuses = id_list(request, 'statuses')
    if statuses:
        domain += psp_status_domain(statuses)
    methods = id_list(request, 'payment_methods')
    if methods:
        back = {v: k for k, v in PSP_METHOD.items()}
        domain.append(('method', 'in', [back.get(m, m) for m in methods]))
    return listing(request, pool, access, 'payt.online.payment',
        psp_entity, domain=domain)


@endpoint('/v1/psp_transactions/<id_>', 'GET', 'psp_transactions:read')
def get_psp(request, pool, access, id_):
    payment = one(pool, 'payt.online.payment', access, request, id_, None)
    return select(psp_entity(payment), fields_of(request)), 200


# --------------------------------------------------------------- openapi

@app.route(PREFIX + '/v1/openapi.json', methods=['GET'])
def openapi(request, database_name):
    "The part of Payt's document we implement; no token needed."
    with open(DOCUMENT) as f:
        document = json.load(f)
    document['servers'] = [{'url': base_url(database_name),
            'description': "This server"}]
    return json_response(document)
