# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The debtor portal, served by the Tryton server itself.

Every reminder carries a personal link /<database>/payt/portal/<token>. The
token (secrets.token_urlsafe(32), 256 bits) is stored only as its SHA-256;
a link is scoped to one debtor of one administration, expires, can be
revoked, and can require the debtor's postcode as a second check.

The page is plain HTML (no JavaScript), in Dutch or English, with every
value escaped by markupsafe. Every form carries a CSRF token bound to a
cookie (double submit, HMAC with the link's own secret); every POST ends
in a redirect (post/redirect/get).

The page sends Referrer-Policy: same-origin, so browsers post its forms
with their own Origin, which trytond accepts (with no-referrer Chromium
posts Origin: null, which trytond refuses). Every refusal is a page of
the portal with its security headers (403, 404, 413, 429), never a 500.

Failed token and postcode attempts and plan requests are counted in the
database (portal_limit.py), so the limits hold across server processes;
the keys are per address for unknown tokens, per link and address for
postcodes and per link for plan requests."""
import collections
import datetime
import functools
import hashlib
import hmac
import logging
import re
import secrets
import urllib.parse
from decimal import Decimal, InvalidOperation

from markupsafe import Markup
from werkzeug.exceptions import (
    BadRequest, Forbidden, HTTPException, NotFound)
from werkzeug.utils import redirect

from trytond import config
from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool, PoolMeta
from trytond.protocols.wrappers import (
    Response, set_max_request_size, with_pool, with_transaction)
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wsgi import app

from .company import CompanyConsistentMixin
from .owed import balance
from .portal_limit import (
    DAY, FAILURE_LIMIT, FAILURE_WINDOW, PLAN_LIMIT, POSTCODE_LIMIT,
    POSTCODE_REVOKE, setting)

logger = logging.getLogger(__name__)
DEFAULT_BASE_URL = 'http://127.0.0.1:8000'
TOKEN_RE = re.compile(r'^[A-Za-z0-9_-]{43}$')
MAX_REQUEST = 64 * 1024
EMAIL_RE = re.compile(r'^[^@\s<>"]{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$')


def base_url():
    return config.get('payt', 'portal_url',
        default=DEFAULT_BASE_URL).rstrip('/')


def hash_token(token):
    return hashlib.sha256(token.encode('utf-8')).hexdigest()


def normalise_postcode(value):
    return re.sub(r'\s+', '', value or '').upper()


# ------------------------------------------------------------ rate limit

def limited(key, option=FAILURE_LIMIT):
    "Whether the key's attempts reached their limit (any server process)."
    Attempt = Pool().get('payt.portal.attempt')
    return Attempt.blocked(key, setting(option), setting(FAILURE_WINDOW))


def count_failure(key):
    Pool().get('payt.portal.attempt').record(key)


# ----------------------------------------------------------------- models

class PortalLink(CompanyConsistentMixin, ModelSQL, ModelView):
    "Portal Link"
    __name__ = 'payt.portal.link'
    __string__ = "Portal Link"
    company = fields.Many2One('company.company', "Company", required=True,
        readonly=True)
    administration = fields.Many2One('payt.administration',
        "Administration", required=True, readonly=True, ondelete='CASCADE')
    debtor = fields.Many2One('payt.debtor', "Debtor", required=True,
        readonly=True, ondelete='CASCADE')
    token_hash = fields.Char("Token Hash", required=True, readonly=True,
        help="SHA-256 of the token: the token itself is never stored.")
    secret = fields.Char("Secret", required=True, readonly=True,
        help="Signs the link's CSRF and postcode cookies.")
    expires_at = fields.Timestamp("Expires At", required=True,
        readonly=True)
    revoked = fields.Boolean("Revoked", readonly=True)
    revoked_at = fields.Timestamp("Revoked At", readonly=True)
    last_used = fields.Timestamp("Last Used", readonly=True)
    uses = fields.Integer("Uses", readonly=True)
    postcode_failures = fields.Integer("Failed Postcode Checks",
        readonly=True)
    state = fields.Function(fields.Selection([
                ('valid', "Valid"),
                ('expired', "Expired"),
                ('revoked', "Revoked"),
                ], "State"), 'get_state')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.token_hash, Index.Equality())))
        cls._sql_indexes.add(Index(t, (t.debtor, Index.Range())))
        cls._order = [('create_date', 'DESC'), ('id', 'DESC')]
        cls._buttons.update({
                'revoke': {
                    'invisible': Eval('revoked', False),
                    'depends': ['revoked'],
                    },
                })

    @staticmethod
    def default_revoked():
        return False

    @staticmethod
    def default_uses():
        return 0

    @staticmethod
    def default_postcode_failures():
        return 0

    def get_state(self, name):
        if self.revoked:
            return 'revoked'
        if self.expires_at < datetime.datetime.now():
            return 'expired'
        return 'valid'

    def get_rec_name(self, name):
        return "%s (%s)" % (self.debtor.rec_name, self.expires_at)

    @classmethod
    def issue(cls, debtor, days=None):
        "A new link for the debtor; returns (link, token)."
        (link, token), = cls.issue_many([debtor], days)
        return link, token

    @classmethod
    def issue_many(cls, debtors, days=None):
        """A new link for each debtor, created in one go (the sender makes
        one per email); returns [(link, token)] in the debtors' order."""
        tokens = [secrets.token_urlsafe(32) for _ in debtors]
        links = cls.create([cls._link_values(debtor, token, days)
                for debtor, token in zip(debtors, tokens)])
        return list(zip(links, tokens))

    @staticmethod
    def _link_values(debtor, token, days=None):
        administration = debtor.administration
        days = days or administration.portal_link_days or 60
        return {'company': debtor.company.id,
            'administration': administration.id,
            'debtor': debtor.id, 'token_hash': hash_token(token),
            'secret': secrets.token_urlsafe(32),
            'expires_at': datetime.datetime.now()
            + datetime.timedelta(days=days)}

    @classmethod
    def url(cls, token, database=None):
        database = database or Transaction().database.name
        return '%s/%s/payt/portal/%s' % (base_url(),
            urllib.parse.quote(database), token)

    @classmethod
    def url_for(cls, debtor):
        "A personal portal URL for a reminder (a new link each time)."
        url, = cls.urls_for([debtor])
        return url

    @classmethod
    def urls_for(cls, debtors):
        """url_for of each debtor, in order, the links created at once (a
        sender's batch of emails)."""
        if Transaction().readonly:
            return [base_url() + '/' for _ in debtors]
        return [cls.url(token) for _, token in cls.issue_many(debtors)]

    @classmethod
    def find(cls, token):
        "The valid link of a token, or None (same answer for any failure)."
        if not token or not TOKEN_RE.match(token):
            return None
        links = cls.search([('token_hash', '=', hash_token(token))],
            limit=1)
        if not links:
            return None
        link, = links
        if not hmac.compare_digest(link.token_hash, hash_token(token)):
            return None
        if link.state != 'valid':
            return None
        return link

    @classmethod
    @ModelView.button
    def revoke(cls, links):
        cls.write(links, {'revoked': True,
                'revoked_at': datetime.datetime.now()})

    @classmethod
    def revoke_debtor(cls, debtors):
        "Revoke every link of the debtors (e.g. a leaked email)."
        cls.revoke(cls.search([('debtor', 'in', [d.id for d in debtors]),
                    ('revoked', '=', False)]))

    # signed values: CSRF and the postcode check
    def sign(self, purpose, value=''):
        return hmac.new(self.secret.encode(),
            ('%s:%s:%s' % (purpose, self.id, value)).encode(),
            hashlib.sha256).hexdigest()

    def check(self, purpose, value, signature):
        return bool(signature) and hmac.compare_digest(
            self.sign(purpose, value), signature)

    def needs_postcode(self):
        return bool(self.administration.portal_postcode_check
            and normalise_postcode(self.debtor.postal_code))


class Administration(metaclass=PoolMeta):
    __name__ = 'payt.administration'
    portal_postcode_check = fields.Boolean("Portal: Ask Postcode",
        help="The debtor must enter the postcode before the portal page "
        "shows anything.")
    portal_link_days = fields.Integer("Portal Link Valid (days)",
        domain=['OR', ('portal_link_days', '=', None),
            ('portal_link_days', '>', 0)])
    mollie_api_key = fields.Char("Mollie API Key",
        help="test_... or live_...; leave empty to use the server's "
        "[payt] mollie_api_key.")

    @staticmethod
    def default_portal_postcode_check():
        return False

    @staticmethod
    def default_portal_link_days():
        return 60


class OpenItem(metaclass=PoolMeta):
    __name__ = 'payt.item'
    invoice_pdf = fields.Binary("Invoice PDF", filename='invoice_pdf_name',
        readonly=True)
    invoice_pdf_name = fields.Char("Invoice PDF Name", readonly=True)


class Debtor(metaclass=PoolMeta):
    __name__ = 'payt.debtor'
    portal_links = fields.One2Many('payt.portal.link', 'debtor',
        "Portal Links", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._buttons.update({'revoke_portal_links': {}})

    @classmethod
    @ModelView.button
    def revoke_portal_links(cls, debtors):
        Pool().get('payt.portal.link').revoke_debtor(debtors)


# -------------------------------------------------------------- the page

DONE = {'message', 'plan', 'email'}
ERRORS = {'items', 'amount', 'email', 'message', 'terms', 'pay',
    'plan_limit'}

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:1rem;max-width:48rem;
margin:auto;line-height:1.4;color:#222}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;width:100%}td,th{padding:.4rem;
border-bottom:1px solid #ddd;text-align:left}td.n,th.n{text-align:right;
white-space:nowrap}
.note{background:#eef6ee;padding:.6rem}.error{background:#fbeaea;
padding:.6rem}.msg{border-left:3px solid #99b;padding:.3rem .6rem;
margin:.5rem 0}.msg.in{border-color:#9b9}.meta{color:#666;font-size:.85rem}
textarea,input[type=text],input[type=email],select{width:100%;
box-sizing:border-box;padding:.5rem;font-size:1rem}
button{padding:.6rem 1.2rem;font-size:1rem;margin-top:.5rem}
@media (max-width:36rem){td.h,th.h{display:none}td,th{padding:.4rem .2rem}}
.pay{background:#eef2fb;padding:.2rem .8rem;margin:1rem 0}
.pay .total{font-size:1.15rem}a.button{display:inline-block;
background:#2455b5;color:#fff;padding:.6rem 1.2rem;text-decoration:none}
#iban,#reference{white-space:nowrap}
"""


def t(key, language):
    """The page's text `key` in the language: message msg_portal_<key>,
    Dutch from locale/nl.po, English for any language without one."""
    return gettext('payt_dunning.msg_portal_' + key, language)


def html_page(title, body, language):
    return Markup(
        '<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, '
        'initial-scale=1"><meta name="robots" content="noindex">'
        '<title>{title}</title><style>{style}</style></head>'
        '<body>{body}</body></html>').format(lang=language, title=title,
        style=Markup(STYLE), body=body)


def respond(body, status=200, cookies=()):
    response = Response(str(body), status=status,
        content_type='text/html; charset=utf-8')
    secure_headers(response)
    for name, value in cookies:
        response.set_cookie(name, value, httponly=True, samesite='Strict',
            secure=base_url().startswith('https'), path='/')
    return response


def secure_headers(response):
    response.headers['Content-Security-Policy'] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    response.headers['X-Content-Type-Options'] = 'nosniff'
    response.headers['X-Frame-Options'] = 'DENY'
    # same-origin, not no-referrer: with no-referrer Chromium posts the
    # forms with Origin: null, which trytond refuses.
    response.headers['Referrer-Policy'] = 'same-origin'
    response.headers['Cache-Control'] = 'no-store'
    return response


def client_key(request):
    return request.remote_addr or 'unknown'


# The refusal pages are written here, not as messages: most are served
# outside any database transaction (an unknown database, a request too
# large, a refusal raised by trytond, or raised in the endpoint and caught
# by portal_errors once its transaction has ended), where ir.message
# cannot be read. The title repeats msg_portal_title.
REFUSAL_TITLE = {'nl': "Uw openstaande facturen", 'en': "Your open invoices"}
REFUSAL_TEXTS = {
    'bad': {'nl': "Dit verzoek kunnen we niet verwerken.",
        'en': "We cannot process this request."},
    'forbidden': {'nl': "Dit formulier is verlopen of kwam niet van deze "
        "pagina. Open uw link opnieuw en probeer het nog eens.",
        'en': "This form has expired or did not come from this page. "
        "Please open your link again and retry."},
    'gone': {'nl': "Deze link is ongeldig of verlopen. Neem contact op "
        "met de afzender voor een nieuwe link.",
        'en': "This link is invalid or has expired. Please ask the sender "
        "for a new link."},
    'too_large': {'nl': "Dit verzoek is te groot.",
        'en': "This request is too large."},
    'slow': {'nl': "Te veel pogingen. Probeer het later opnieuw.",
        'en': "Too many attempts. Please try again later."},
    }
REFUSALS = {400: 'bad', 403: 'forbidden', 404: 'gone', 405: 'bad',
    413: 'too_large', 429: 'slow'}


def refusal(status):
    """The portal's page for a refused request, in Dutch and English (the
    debtor's language is unknown without a valid link)."""
    text = REFUSAL_TEXTS[REFUSALS.get(status, 'bad')]
    body = Markup().join(
        Markup('<div lang="{}"><h1>{}</h1><p>{}</p></div>').format(
            language, REFUSAL_TITLE[language], text[language])
        for language in ('nl', 'en'))
    response = respond(html_page(REFUSAL_TITLE['nl'], body, 'nl'),
        status=status)
    if status == 429:
        response.headers['Retry-After'] = str(setting(FAILURE_WINDOW))
    return response


def portal_errors(endpoint):
    "Refusals raised in a portal endpoint become the portal's own pages."
    @functools.wraps(endpoint)
    def wrapper(request, *args, **kwargs):
        try:
            return endpoint(request, *args, **kwargs)
        except HTTPException as error:
            if error.code and 400 <= error.code < 500:
                return refusal(error.code)
            raise
    return wrapper


class PortalRefusals:
    """trytond refuses a POST whose Origin is another site or null by
    raising out of its WSGI application, which the server answers with
    500 Internal Server Error; on the portal's paths that is the portal's
    403 page with its headers."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        try:
            return self.application(environ, start_response)
        except HTTPException as error:
            if ('/payt/portal/' not in environ.get('PATH_INFO', '')
                    or not error.code or error.code >= 500):
                raise
            return refusal(error.code)(environ, start_response)


if not isinstance(app.wsgi_app, PortalRefusals):
    app.wsgi_app = PortalRefusals(app.wsgi_app)


def language_of(request, link):
    wanted = request.args.get('lang')
    if wanted in ('nl', 'en'):
        return wanted
    return link.debtor.language if link.debtor.language in ('nl', 'en') \
        else 'nl'


def open_link(request, token):
    """The link of the token, or an HTTP answer. Unknown tokens count
    against the client's address; past the limit that address gets 429
    for unknown tokens, while a valid link still opens for anyone behind
    the same address (a 256-bit token is not found by guessing)."""
    key = 'token:%s' % client_key(request)
    Link = Pool().get('payt.portal.link')
    link = Link.find(token)
    if link is not None:
        return link, None
    if limited(key):
        return None, refusal(429)
    count_failure(key)
    return None, refusal(404)


Letter = collections.namedtuple('Letter', 'kind record date pdf name')


def sent_letters(debtor):
    "The letters sent to the debtor with their PDF, newest first."
    pool = Pool()
    CaseLetter = pool.get('payt.case.letter')
    Communication = pool.get('payt.communication')
    letters = [Letter('case', l, l.date, l.pdf, l.pdf_name or
            'letter-%s.pdf' % l.id)
        for l in CaseLetter.search([('case.debtor', '=', debtor.id)])
        if l.pdf]
    seen = set()
    for communication in Communication.search([
                ('item.debtor', '=', debtor.id), ('channel', '=', 'letter'),
                ('state', 'in', ['sent', 'delivered'])],
            order=[('id', 'ASC')]):
        key = communication.letter_key or communication.id
        if key in seen or not communication.letter_pdf:
            continue
        seen.add(key)
        letters.append(Letter('flow', communication, communication.run_date,
                communication.letter_pdf, communication.letter_filename
                or 'letter-%s.pdf' % communication.id))
    return sorted(letters, key=lambda l: (l.date, l.record.id),
        reverse=True)


class Portal:
    "One request of a debtor on the portal page."

    def __init__(self, request, link, language):
        self.request = request
        self.link = link
        self.debtor = link.debtor
        self.administration = link.administration
        self.language = language
        self.currency = self.administration.company.currency
        self.csrf_cookie = request.cookies.get('payt_csrf')
        self.new_cookies = []
        if not self.csrf_cookie or not re.match(
                r'^[A-Za-z0-9_-]{20,64}$', self.csrf_cookie):
            self.csrf_cookie = secrets.token_urlsafe(24)
            self.new_cookies.append(('payt_csrf', self.csrf_cookie))

    def t(self, key):
        return t(key, self.language)

    def money(self, amount):
        from .communication import format_money
        return format_money(amount or 0, self.currency, self.language)

    def date(self, value):
        from .communication import format_date
        return format_date(value, self.language)

    def csrf_field(self):
        return Markup('<input type="hidden" name="csrf" value="{}">').format(
            self.link.sign('csrf', self.csrf_cookie))

    def csrf_ok(self, form):
        return self.link.check('csrf', self.request.cookies.get(
                'payt_csrf', ''), form.get('csrf', ''))

    def verified(self):
        if not self.link.needs_postcode():
            return True
        return self.link.check('postcode', '', self.request.cookies.get(
                'payt_pc_%s' % self.link.id, ''))

    def action_url(self):
        return self.request.path + ('?lang=%s' % self.language)

    # -------------------------------------------------------- rendering
    def postcode_page(self, error=False):
        body = Markup('<h1>{}</h1><p>{}</p>').format(
            self.t('postcode_title'), self.t('postcode_ask'))
        if error:
            body += Markup('<p class="error">{}</p>').format(
                self.t('postcode_wrong'))
        body += Markup(
            '<form method="post" action="{action}">{csrf}'
            '<input type="hidden" name="action" value="verify">'
            '<label>{label}<input type="text" name="postcode" '
            'autocomplete="postal-code" maxlength="12" required></label>'
            '<button>{go}</button></form>').format(
            action=self.action_url(), csrf=self.csrf_field(),
            label=self.t('postcode'), go=self.t('continue'))
        return respond(html_page(self.t('postcode_title'), body,
                self.language), status=401 if error else 200,
            cookies=self.new_cookies)

    def page(self):
        pool = Pool()
        Message = pool.get('payt.message')
        Plan = pool.get('payt.plan')
        Online = pool.get('payt.online.payment')
        debtor = self.debtor
        args = self.request.args
        owed = balance(debtor)
        items = [o.item for o in owed.items]
        planned = {i.id for p in Plan.search([('debtor', '=', debtor.id),
                    ('state', '=', 'running')]) for i in p.items()}
        pending = Online.pending_by_item(items)
        lang_switch = 'en' if self.language == 'nl' else 'nl'
        body = Markup(
            '<p style="text-align:right"><a href="{href}">{label}</a></p>'
            '<h1>{title}</h1><p>{hello}<br>{company}</p>').format(
            href='?lang=' + lang_switch, label=self.t('language'),
            title=self.t('title'), hello=self.t('hello') % debtor.name,
            company=self.t('from') % self.administration.company.rec_name)
        done = args.get('done')
        if done in DONE:
            body += Markup('<p class="note" id="done">{}</p>').format(
                self.t('done_' + done))
        error = args.get('error')
        if error in ERRORS:
            body += Markup('<p class="error" id="error">{}</p>').format(
                self.t('error_' + error))
        payment_id = args.get('payment', '')
        if payment_id.isdigit():
            body += self.payment_note(int(payment_id))
        body += self.payment_data(owed)
        body += self.items_table(owed, planned, pending)
        body += self.plans_section()
        body += self.documents_section(items)
        body += self.messages_section(items)
        body += self.plan_form()
        body += self.email_form()
        # What the debtor saw is read.
        unread = Message.search([('debtor', '=', debtor.id),
                ('direction', '=', 'out'), ('seen', '=', False)])
        if unread:
            Message.write(unread, {'seen': True,
                    'read_at': datetime.datetime.now()})
        return respond(html_page(self.t('title'), body, self.language),
            cookies=self.new_cookies)

    def payment_note(self, payment_id):
        "Back from the checkout: what Mollie says of the payment now."
        Online = Pool().get('payt.online.payment')
        payments = Online.search([('id', '=', payment_id),
                ('debtor', '=', self.debtor.id)])
        if not payments:
            return Markup()
        status = payments[0].status
        key = ('done_paid' if status == 'paid' else 'done_pending'
            if status == 'open' else 'done_failed')
        return Markup('<p class="note" id="payment">{}</p>').format(
            self.t(key))

    def payment_data(self, owed):
        "IBAN, reference, amount and the online payment link (issue 9.5)."
        if owed.total <= 0:
            return Markup()
        administration = self.administration
        out = Markup('<section id="payment-data" class="pay"><h2>{}</h2>'
            '<p class="total">{}: <strong>{}</strong></p>').format(
            self.t('how_to_pay'), self.t('total_owed'),
            self.money(owed.total))
        data = administration.payment_data(self.debtor, owed.numbers(),
            owed.total, '#pay')
        if data.iban:
            out += Markup('<p>{}</p>').format(Markup(self.t('transfer')).format(
                    amount=Markup('<strong>{}</strong>').format(
                        self.money(owed.total)),
                    iban=Markup('<strong id="iban">{}</strong>').format(
                        data.iban_display),
                    holder=data.beneficiary,
                    reference=Markup('<strong id="reference">{}</strong>'
                        ).format(data.reference)))
        out += Markup('<p><a class="button" href="#pay">{}</a></p>'
            '</section>').format(self.t('pay_link'))
        return out

    def items_table(self, owed, planned, pending):
        if not owed.items:
            return Markup('<p>{}</p>').format(self.t('none_open'))
        rows = Markup()
        for line in owed.items:
            rows += self.item_row(line, planned, pending)
        for case in owed.cases:
            rows += self.case_rows(case)
        mandate = Markup()
        if self.debtor.mollie_mandate_id:
            mandate = Markup('<p id="mandate">{}</p>').format(
                self.t('mandate_shown') % self.debtor.mollie_mandate_label)
        else:
            mandate = Markup(
                '<p><label><input type="checkbox" name="mandate" value="1">'
                ' {}</label></p>').format(self.t('mandate')
                % self.administration.company.rec_name)
        note = Markup()
        if owed.cases:
            note = Markup('<p class="meta">{}</p>').format(
                self.t('case_note'))
        return Markup(
            '<h2 id="pay">{pay_title}</h2><form method="post" '
            'action="{action}">'
            '{csrf}<input type="hidden" name="action" value="pay">'
            '<table id="items"><tr><th>{invoice}</th><th class="h">{date}'
            '</th><th>{due}</th><th class="n h">{amount}</th>'
            '<th class="n">{open}</th><th class="h"></th></tr>{rows}'
            '<tr><th>{total_label}</th><th class="h"></th><th></th>'
            '<th class="h"></th><th class="n" id="total">{total}</th>'
            '<th class="h"></th></tr></table>'
            '{note}<p><label>{pay_amount}<input type="text" name="amount" '
            'inputmode="decimal" maxlength="20"></label></p>{mandate}'
            '<button name="pay" value="1">{pay}</button></form>').format(
            pay_title=self.t('pay_title'), action=self.action_url(),
            csrf=self.csrf_field(), invoice=self.t('invoice'),
            date=self.t('date'), due=self.t('due'),
            amount=self.t('amount'), open=self.t('open'), rows=rows,
            total_label=self.t('total_owed'), total=self.money(owed.total),
            note=note, pay_amount=self.t('pay_amount'), mandate=mandate,
            pay=self.t('pay'))

    def item_row(self, line, planned, pending):
        item = line.item
        notes = []
        if line.case:
            notes.append(self.t('case') % line.case.id)
        if item.id in planned:
            notes.append(self.t('state_plan'))
        if pending.get(item.id):
            notes.append('%s %s' % (self.money(pending[item.id]),
                    self.t('paid_online')))
        pdf = Markup()
        if item.invoice_pdf:
            pdf = Markup('<a href="{}/invoice/{}">{}</a>').format(
                self.request.path, item.id, self.t('pdf'))
        return Markup(
            '<tr class="item"><td><label><input type="checkbox" name="item" '
            'value="{id}"{checked}> {number}</label>'
            '<div class="meta">{description}{notes}</div></td>'
            '<td class="h">{date}</td><td>{due}</td>'
            '<td class="n h">{amount}</td><td class="n">{open}</td>'
            '<td class="h">{pdf}</td></tr>').format(
            id=item.id, checked=Markup('') if item.id in planned
            else Markup(' checked'),
            number=item.number or item.external_id,
            description=item.description or '',
            notes=(' - ' + ', '.join(notes)) if notes else '',
            date=self.date(item.invoice_date), due=self.date(item.due_date),
            amount=self.money(item.amount), open=self.money(line.principal),
            pdf=pdf)

    def case_rows(self, line):
        "A case's costs and interest, each on a row of its own."
        rows = Markup()
        for key, amount in [('costs', line.costs),
                ('interest', line.interest)]:
            if amount:
                rows += Markup('<tr class="{key}"><td>{label} - {case}</td>'
                    '<td class="h"></td><td></td><td class="h"></td>'
                    '<td class="n">{amount}</td><td class="h"></td></tr>'
                    ).format(key=key, label=self.t(key),
                    case=self.t('case') % line.case.id,
                    amount=self.money(amount))
        return rows

    def documents_section(self, items):
        "The invoices (PDF) and the letters sent, to download."
        links = Markup()
        for item in items:
            if item.invoice_pdf:
                links += Markup('<li><a href="{}/invoice/{}" download>{} {}'
                    '</a></li>'
                    ).format(self.request.path, item.id, self.t('invoice'),
                    item.number or item.external_id)
        for letter in sent_letters(self.debtor):
            links += Markup('<li><a class="letter" href="{}/letter/{}/{}" '
                'download>{}</a></li>').format(self.request.path, letter.kind,
                letter.record.id, self.t('letter') % self.date(letter.date))
        if not links:
            return Markup('<h2>{}</h2><p>{}</p>').format(
                self.t('documents'), self.t('no_documents'))
        return Markup('<section id="documents"><h2>{}</h2><ul>{}</ul>'
            '</section>').format(
            self.t('documents'), links)

    def plans_section(self):
        Plan = Pool().get('payt.plan')
        plans = Plan.search([('debtor', '=', self.debtor.id),
                ('state', '=', 'running')])
        if not plans:
            return Markup()
        out = Markup('<h2>{}</h2>').format(self.t('plans'))
        for plan in plans:
            rows = Markup()
            for term in sorted(plan.terms, key=lambda t: t.number or 0):
                rows += Markup('<tr><td>{} {}</td><td>{}</td>'
                    '<td class="n">{}</td><td>{}</td></tr>').format(
                    self.t('term'), term.number, self.date(term.due_date),
                    self.money(term.amount), term.state)
            out += Markup('<table>{}</table>').format(rows)
        return out

    def messages_section(self, items):
        Message = Pool().get('payt.message')
        messages = Message.search([('debtor', '=', self.debtor.id)],
            order=[('sent_at', 'ASC'), ('id', 'ASC')])
        out = Markup('<h2 id="messages">{}</h2>').format(self.t('messages'))
        if not messages:
            out += Markup('<p>{}</p>').format(self.t('no_messages'))
        for message in messages:
            who = (self.t('you') if message.direction == 'in'
                else (message.author or self.administration.company.rec_name))
            about = ''
            if message.item:
                about = ' - %s %s' % (self.t('invoice'),
                    message.item.number or message.item.external_id)
            out += Markup('<div class="msg {cls}"><div class="meta">{who}, '
                '{when}{about}</div><div style="white-space:pre-wrap">'
                '{body}</div></div>').format(
                cls=message.direction, who=who,
                when=message.sent_at.strftime('%d-%m-%Y %H:%M')
                if message.sent_at else '', about=about, body=message.body)
        options = Markup('<option value="">{}</option>').format(
            self.t('general'))
        for item in items:
            options += Markup('<option value="{}">{} {}</option>').format(
                item.id, self.t('invoice'), item.number or item.external_id)
        out += Markup(
            '<h2>{write}</h2><form method="post" action="{action}">{csrf}'
            '<input type="hidden" name="action" value="message">'
            '<label>{about}<select name="item">{options}</select></label>'
            '<textarea name="body" rows="5" maxlength="5000" required>'
            '</textarea><button>{send}</button></form>').format(
            write=self.t('write'), action=self.action_url(),
            csrf=self.csrf_field(), about=self.t('about'), options=options,
            send=self.t('send'))
        return out

    def plan_form(self):
        options = Markup().join(
            Markup('<option value="{0}">{0}</option>').format(n)
            for n in range(2, 25))
        return Markup(
            '<h2>{title}</h2><form method="post" action="{action}">{csrf}'
            '<input type="hidden" name="action" value="plan">'
            '<label>{terms}<select name="terms">{options}</select></label>'
            '<label>{note}<textarea name="note" rows="3" maxlength="2000">'
            '</textarea></label><button>{send}</button></form>').format(
            title=self.t('plan_title'), action=self.action_url(),
            csrf=self.csrf_field(), terms=self.t('plan_terms'),
            options=options, note=self.t('plan_note'),
            send=self.t('plan_send'))

    def email_form(self):
        return Markup(
            '<h2>{title}</h2><p>{now}</p><form method="post" '
            'action="{action}">{csrf}<input type="hidden" name="action" '
            'value="email"><input type="email" name="email" maxlength="254" '
            'required><button>{send}</button></form>').format(
            title=self.t('email_title'),
            now=self.t('email_now') % (self.debtor.email or '-'),
            action=self.action_url(), csrf=self.csrf_field(),
            send=self.t('email_send'))

    # ---------------------------------------------------------- actions
    def back(self, **args):
        args['lang'] = self.language
        response = redirect(self.request.path + '?' + urllib.parse.urlencode(
                args), code=303)
        return secure_headers(response)

    def own_items(self, ids):
        "The open items among ids that are the debtor's; else None."
        Item = Pool().get('payt.item')
        try:
            ids = {int(i) for i in ids if i}
        except ValueError:
            return None
        if not ids:
            return []
        items = Item.search([('id', 'in', list(ids)),
                ('debtor', '=', self.debtor.id), ('state', '=', 'open')])
        if len(items) != len(ids):
            return None
        return items

    def postcode_key(self):
        return 'postcode:%s:%s' % (self.link.id, client_key(self.request))

    def do_verify(self, form):
        link = self.link
        key = self.postcode_key()
        if limited(key, POSTCODE_LIMIT):
            return refusal(429)
        given = normalise_postcode(form.get('postcode'))[:12]
        expected = normalise_postcode(link.debtor.postal_code)
        if not link.needs_postcode() or hmac.compare_digest(
                given.encode(), expected.encode()):
            response = self.back()
            response.set_cookie('payt_pc_%s' % link.id,
                link.sign('postcode'), httponly=True, samesite='Lax',
                secure=base_url().startswith('https'), path='/')
            return response
        count_failure(key)
        link.postcode_failures = (link.postcode_failures or 0) + 1
        if link.postcode_failures >= POSTCODE_REVOKE:
            link.revoked = True
            link.revoked_at = datetime.datetime.now()
        link.save()
        return self.postcode_page(error=True)

    def do_message(self, form):
        Message = Pool().get('payt.message')
        body = (form.get('body') or '').strip()
        if not body or len(body) > 5000:
            return self.back(error='message')
        items = self.own_items([form.get('item')])
        if items is None:
            raise NotFound()
        Message.create([{'company': self.link.company.id,
                    'administration': self.administration.id,
                    'debtor': self.debtor.id,
                    'item': items[0].id if items else None,
                    'direction': 'in', 'author': self.debtor.name,
                    'body': body}])
        return self.back(done='message')

    def do_plan(self, form):
        """A draft plan over what the debtor owes now and no plan covers
        yet: items outside a case by their open amount, cases by all they
        ask (costs and interest included); at most PLAN_LIMIT per link and
        day."""
        pool = Pool()
        Plan = pool.get('payt.plan')
        Attention = pool.get('payt.attention')
        Attempt = pool.get('payt.portal.attempt')
        try:
            terms = int(form.get('terms', ''))
        except ValueError:
            terms = 0
        if not 2 <= terms <= 24:
            return self.back(error='terms')
        key = 'plan:%s' % self.link.id
        if Attempt.blocked(key, setting(PLAN_LIMIT), DAY):
            return self.back(error='plan_limit')
        note = (form.get('note') or '').strip()[:2000]
        items, cases = self.plannable()
        if not items and not cases:
            return self.back(error='items')
        Attempt.record(key)
        plan = Plan.create_for(self.debtor, items, cases, terms,
            max(pool.get('ir.date').today() + datetime.timedelta(days=14),
                Plan.earliest_start_date(3)), requested=True,
            request_note=note)
        Attention.raise_for(self.administration, 'plan_requested',
            'msg_attention_plan_requested', note=note, debtor=self.debtor,
            debtor_name=self.debtor.name, terms=terms, plan=plan.id)
        return self.back(done='plan')

    def plannable(self):
        "(items, cases) owed now that no running plan covers."
        Plan = Pool().get('payt.plan')
        owed = balance(self.debtor)
        busy = {i.id for p in Plan.search([('debtor', '=', self.debtor.id),
                    ('state', '=', 'running')]) for i in p.items()}
        items = [o.item for o in owed.items if not o.case
            and o.principal > 0 and o.item.id not in busy]
        cases = [c.case for c in owed.cases
            if c.case.remaining_total > 0
            and not any(i.id in busy for i in c.case.items)]
        return items, cases

    def do_email(self, form):
        Attention = Pool().get('payt.attention')
        email = (form.get('email') or '').strip()
        if not EMAIL_RE.match(email):
            return self.back(error='email')
        Attention.raise_for(self.administration, 'details_changed',
            'msg_attention_email_change', debtor=self.debtor,
            debtor_name=self.debtor.name, old=self.debtor.email or '-',
            new=email)
        return self.back(done='email')

    def do_pay(self, form):
        Online = Pool().get('payt.online.payment')
        items = self.own_items(form.getlist('item'))
        if items is None:
            raise NotFound()
        if not items:
            return self.back(error='items')
        amount = None
        text = (form.get('amount') or '').strip().replace(',', '.')
        if text:
            try:
                amount = Decimal(text)
            except InvalidOperation:
                return self.back(error='amount')
            total = sum((i.open_amount for i in items), Decimal(0))
            if (not amount.is_finite() or amount <= 0 or amount > total
                    or amount != self.currency.round(amount)):
                return self.back(error='amount')
        try:
            payment = Online.start(self.debtor, items, amount=amount,
                mandate=form.get('mandate') == '1',
                portal_url=base_url() + self.request.path,
                language=self.language)
        except Online.Unavailable:
            logger.warning("Online payment unavailable", exc_info=True)
            return self.back(error='pay')
        return secure_headers(redirect(payment.checkout_url, code=303))


def _portal(request, pool, token, post):
    link, answer = open_link(request, token)
    if answer:
        return answer
    portal = Portal(request, link, language_of(request, link))
    link.last_used = datetime.datetime.now()
    link.uses = (link.uses or 0) + 1
    link.save()
    if not post:
        if not portal.verified():
            if limited(portal.postcode_key(), POSTCODE_LIMIT):
                return refusal(429)
            return portal.postcode_page()
        return portal.page()
    form = request.form
    if not portal.csrf_ok(form):
        raise Forbidden("Invalid or missing CSRF token")
    action = form.get('action')
    if action == 'verify':
        return portal.do_verify(form)
    if not portal.verified():
        raise Forbidden("Postcode check required")
    handler = {'message': portal.do_message, 'plan': portal.do_plan,
        'email': portal.do_email, 'pay': portal.do_pay}.get(action)
    if not handler:
        raise BadRequest("Unknown action")
    return handler(form)


@app.route('/<database_name>/payt/portal/<token>', methods=['GET'])
@portal_errors
@with_pool
@with_transaction(readonly=False)
def portal_get(request, pool, token):
    return _portal(request, pool, token, post=False)


@app.route('/<database_name>/payt/portal/<token>', methods=['POST'])
@set_max_request_size(MAX_REQUEST)
@portal_errors
@with_pool
@with_transaction(readonly=False)
def portal_post(request, pool, token):
    return _portal(request, pool, token, post=True)


def _document(request, token, find):
    """A PDF of the link's debtor: find(debtor) gives (bytes, name) or
    None."""
    link, answer = open_link(request, token)
    if answer:
        return answer
    portal = Portal(request, link, language_of(request, link))
    if not portal.verified():
        raise Forbidden("Postcode check required")
    found = find(link.debtor)
    if not found or not found[0]:
        raise NotFound()
    data, name = found
    name = re.sub(r'[^A-Za-z0-9._-]', '_', name)
    response = Response(bytes(data), content_type='application/pdf')
    response.headers['Content-Disposition'] = 'inline; filename="%s"' % name
    return secure_headers(response)


@app.route('/<database_name>/payt/portal/<token>/invoice/<int:item_id>',
    methods=['GET'])
@portal_errors
@with_pool
@with_transaction(readonly=False)
def portal_invoice(request, pool, token, item_id):
    def find(debtor):
        items = pool.get('payt.item').search([('id', '=', item_id),
                ('debtor', '=', debtor.id)])
        if items and items[0].invoice_pdf:
            return items[0].invoice_pdf, (items[0].invoice_pdf_name
                or 'invoice-%s.pdf' % item_id)
    return _document(request, token, find)


@app.route('/<database_name>/payt/portal/<token>/letter/<kind>/<int:id_>',
    methods=['GET'])
@portal_errors
@with_pool
@with_transaction(readonly=False)
def portal_letter(request, pool, token, kind, id_):
    "A letter sent to the debtor: of a case, or of the flow."
    def find(debtor):
        for letter in sent_letters(debtor):
            if (letter.kind, letter.record.id) == (kind, id_):
                return letter.pdf, letter.name
    return _document(request, token, find)


# ------------------------------------------------------------------ demo

PORTAL_LINE = {
    'nl': "\n\nBekijk uw facturen, betaal online of stuur ons een bericht:"
    "\n${portal_url}\n",
    'en': "\n\nView your invoices, pay online or send us a message:"
    "\n${portal_url}\n",
    }

def build_portal_demo(pool, administrations, progress=print):
    """Demo: postcode check off, a Mollie test key (the simulator), an
    invoice PDF, a message thread and a running plan on the first
    administration; prints a portal link to try."""
    Administration = pool.get('payt.administration')
    Item = pool.get('payt.item')
    Message = pool.get('payt.message')
    Plan = pool.get('payt.plan')
    Link = pool.get('payt.portal.link')
    Template = pool.get('payt.flow.step.template')
    administration = administrations[0]
    Administration.write(list(administrations), {
            'mollie_api_key': 'test_paytdemo000000000000000000000'})
    # Every reminder carries the debtor's personal portal link.
    templates = {t for a in administrations for s in a.flow.steps
        for t in s.templates if '${portal_url}' not in t.body}
    for template in templates:
        template.body += PORTAL_LINE.get(template.language,
            PORTAL_LINE['en'])
    Template.save(list(templates))
    items = Item.search([('administration', '=', administration.id),
            ('state', '=', 'open'), ('open_amount', '>', 0)],
        order=[('due_date', 'ASC')])
    by_debtor = {}
    for item in items:
        if item.follow_up == 'active':
            by_debtor.setdefault(item.debtor, []).append(item)
    debtors = [d for d, i in by_debtor.items() if len(i) >= 2]
    if not debtors:
        return None
    debtor = debtors[0]
    first = by_debtor[debtor][0]
    Item.write([first], {'invoice_pdf': _demo_pdf(first),
            'invoice_pdf_name': 'factuur-%s.pdf' % (first.number or
                first.external_id)})
    Message.create([{'company': administration.company.id,
                'administration': administration.id, 'debtor': debtor.id,
                'item': first.id, 'direction': 'in',
                'author': debtor.name,
                'body': "Ik heb de factuur niet ontvangen, kunt u hem "
                "opnieuw sturen?"}])
    if len(debtors) > 1:
        other = debtors[1]
        plan = Plan.create_for(other, by_debtor[other], [], 3,
            Plan.earliest_start_date(3))
        Plan.start([plan])
    _, token = Link.issue(debtor)
    url = Link.url(token)
    progress("Portal of %s: %s" % (debtor.name, url))
    return url


def _demo_pdf(item):
    "A one-page invoice PDF for the demo, as an import would bring it."
    import io
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    pdf.setFont('Helvetica-Bold', 16)
    pdf.drawString(72, 770, item.company.rec_name)
    pdf.setFont('Helvetica', 11)
    lines = ["Factuur %s" % (item.number or item.external_id),
        "Debiteur: %s" % item.debtor.name,
        "Factuurdatum: %s" % item.invoice_date,
        "Vervaldatum: %s" % item.due_date,
        "Omschrijving: %s" % (item.description or ''),
        "Bedrag: EUR %s" % item.amount]
    for number, line in enumerate(lines):
        pdf.drawString(72, 730 - 18 * number, line)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
