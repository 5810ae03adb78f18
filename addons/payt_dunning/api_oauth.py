# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""OAuth 2.0 authorization code flow of the REST API (RFC 6749, oauthlib's
WebApplicationServer; we only store and look up).

A partner application (payt.api.application: client id, hashed secret,
its redirect URI) sends the user to B/oauth/authorize. The user logs in
with the back-office login and password, chooses which of the
administrations of their companies and which of the requested scopes to
grant; the browser returns to the application with a code (10 minutes,
once). The application exchanges it at B/oauth/token for an access token
(2 hours) and a refresh token (90 days); a refresh gives a new pair and
ends the old one (rotation). Tokens are payt.api.token rows, one per
granted administration sharing the token's hash, acting as the user who
granted them: the same rights and record rules as in the web client.

oauthlib refuses plain http unless OAUTHLIB_INSECURE_TRANSPORT is set in
the server's environment (the demo and the tests set it; production runs
behind TLS)."""
import base64
import datetime
import secrets
from urllib.parse import urlencode

from markupsafe import Markup
from oauthlib.oauth2 import (
    OAuth2Error, RequestValidator, WebApplicationServer)
from werkzeug.wrappers import Response

from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.protocols.wrappers import with_pool, with_transaction
from trytond.res.user import LoginException, RateLimitException
from trytond.wsgi import app

from .api import PREFIX
from .api_token import SCOPES
from .portal import hash_token, html_page, secure_headers

ACCESS_SECONDS = 2 * 3600
REFRESH_DAYS = 90
CODE_MINUTES = 10
TEXT_KEYS = ['title', 'heading', 'login', 'password', 'log_in', 'wrong',
    'expired', 'asks', 'administrations', 'scopes', 'grant', 'deny']


def texts(language):
    """The pages' texts in the language: messages msg_oauth_<key>, Dutch
    from locale/nl.po."""
    return {key: gettext('payt_dunning.msg_oauth_' + key, language)
        for key in TEXT_KEYS}
def now():
    return datetime.datetime.now()


def language_of(request):
    "The page's language: Dutch unless the browser prefers English."
    return request.accept_languages.best_match(['nl', 'en']) or 'nl'


class Application(ModelSQL, ModelView):
    "API Application"
    __name__ = 'payt.api.application'
    __string__ = "API Application"
    name = fields.Char("Name", required=True,
        help="The partner application, shown to the user who grants it.")
    client_id = fields.Char("Client ID", required=True, readonly=True)
    secret_hash = fields.Char("Secret Hash", required=True, readonly=True)
    redirect_uri = fields.Char("Redirect URI", required=True,
        help="Where the user's browser returns with the code; exactly.")

    @classmethod
    def register(cls, name, redirect_uri):
        "A new application: (record, its secret, which is not stored)."
        secret = secrets.token_urlsafe(32)
        record, = cls.create([{'name': name, 'redirect_uri': redirect_uri,
                    'client_id': secrets.token_urlsafe(16),
                    'secret_hash': hash_token(secret)}])
        return record, secret

    @classmethod
    def by_client_id(cls, client_id):
        records = cls.search([('client_id', '=', client_id or '')], limit=1)
        return records[0] if records else None


class AuthorizationCode(ModelSQL):
    """An authorization code (once, 10 minutes) or, while the user has
    logged in but not yet chosen, a consent ticket."""
    __name__ = 'payt.api.oauth.code'
    __string__ = "API Authorization Code"
    application = fields.Many2One('payt.api.application', "Application",
        required=True, ondelete='CASCADE')
    user = fields.Many2One('res.user', "User", required=True,
        ondelete='CASCADE')
    kind = fields.Selection([
            ('consent', "Consent"),
            ('code', "Code"),
            ], "Kind", required=True)
    code_hash = fields.Char("Code Hash", required=True)
    administrations = fields.Char("Administrations")
    scopes = fields.Char("Scopes")
    redirect_uri = fields.Char("Redirect URI")
    expires = fields.Timestamp("Expires", required=True)

    @classmethod
    def take(cls, application, code, kind):
        "The valid code of the application, or None."
        records = cls.search([('code_hash', '=', hash_token(code or '')),
                ('kind', '=', kind), ('application', '=', application.id),
                ('expires', '>', now())], limit=1)
        return records[0] if records else None


def administrations_of(user):
    "The administrations of the user's companies, as root reads them."
    Administration = Pool().get('payt.administration')
    return Administration.search([
            ('company', 'in', [c.id for c in user.companies])],
        order=[('id', 'ASC')])


class Validator(RequestValidator):
    "Where oauthlib reads and stores: the models above and payt.api.token."

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def _application(self, request):
        return self.pool.get('payt.api.application').by_client_id(
            request.client_id)

    # --------------------------------------------- authorization request
    def validate_client_id(self, client_id, request, *args, **kwargs):
        return self.pool.get('payt.api.application').by_client_id(
            client_id) is not None

    def validate_redirect_uri(self, client_id, redirect_uri, request,
            *args, **kwargs):
        application = self._application(request)
        return application and application.redirect_uri == redirect_uri

    def get_default_redirect_uri(self, client_id, request, *args, **kwargs):
        application = self._application(request)
        return application.redirect_uri if application else None

    def validate_response_type(self, client_id, response_type, client,
            request, *args, **kwargs):
        return response_type == 'code'

    def validate_scopes(self, client_id, scopes, client, request, *args,
            **kwargs):
        return bool(scopes) and all(s in SCOPES for s in scopes)

    def get_default_scopes(self, client_id, request, *args, **kwargs):
        return []

    def is_pkce_required(self, client_id, request):
        return False

    def get_code_challenge(self, code, request):
        return None

    def save_authorization_code(self, client_id, code, request, *args,
            **kwargs):
        Code = self.pool.get('payt.api.oauth.code')
        Code.create([{'application': self._application(request).id,
                    'user': request.user, 'kind': 'code',
                    'code_hash': hash_token(code['code']),
                    'administrations': ' '.join(
                        str(a) for a in request.administrations),
                    'scopes': ' '.join(request.scopes),
                    'redirect_uri': request.redirect_uri,
                    'expires': now() + datetime.timedelta(
                        minutes=CODE_MINUTES)}])

    # ------------------------------------------------------ token request
    def client_authentication_required(self, request, *args, **kwargs):
        return True

    def authenticate_client(self, request, *args, **kwargs):
        "HTTP Basic (RFC 6749 2.3.1) or client_id and secret in the body."
        client_id, secret = request.client_id, request.client_secret
        header = request.headers.get('Authorization', '')
        if header.lower().startswith('basic '):
            try:
                client_id, _, secret = base64.b64decode(
                    header[6:]).decode().partition(':')
            except ValueError:
                return False
        application = self.pool.get('payt.api.application').by_client_id(
            client_id)
        if not application or not secret or (
                hash_token(secret) != application.secret_hash):
            return False
        request.client_id = client_id
        request.client = application
        return True

    def authenticate_client_id(self, client_id, request, *args, **kwargs):
        return False

    def validate_grant_type(self, client_id, grant_type, client, request,
            *args, **kwargs):
        return grant_type in ('authorization_code', 'refresh_token')

    def validate_code(self, client_id, code, client, request, *args,
            **kwargs):
        record = self.pool.get('payt.api.oauth.code').take(client, code,
            'code')
        if not record:
            return False
        request.user = record.user.id
        request.scopes = record.scopes.split()
        request.administrations = [int(a)
            for a in record.administrations.split()]
        request.saved_redirect_uri = record.redirect_uri
        return True

    def confirm_redirect_uri(self, client_id, code, redirect_uri, client,
            request, *args, **kwargs):
        return redirect_uri == getattr(request, 'saved_redirect_uri', None)

    def invalidate_authorization_code(self, client_id, code, request, *args,
            **kwargs):
        Code = self.pool.get('payt.api.oauth.code')
        Code.delete(Code.search([('code_hash', '=', hash_token(code))]))

    def _refreshable(self, refresh_token, client):
        Token = self.pool.get('payt.api.token')
        return Token.search([
                ('refresh_hash', '=', hash_token(refresh_token or '')),
                ('application', '=', client.id),
                ('revoked', '=', False),
                ('refresh_expires', '>', now())])

    def validate_refresh_token(self, refresh_token, client, request, *args,
            **kwargs):
        tokens = self._refreshable(refresh_token, client)
        if not tokens:
            return False
        request.user = tokens[0].user.id
        request.administrations = [t.administration.id for t in tokens]
        request.rotated = tokens
        return True

    def get_original_scopes(self, refresh_token, request, *args, **kwargs):
        return request.rotated[0].scope_list

    def save_bearer_token(self, token, request, *args, **kwargs):
        "One row per administration granted, all with the token's hashes."
        Token = self.pool.get('payt.api.token')
        Administration = self.pool.get('payt.administration')
        if getattr(request, 'rotated', None):
            Token.revoke(request.rotated)
        stamp = now()
        Token.create([{
                    'name': request.client.name,
                    'application': request.client.id,
                    'company': administration.company.id,
                    'administration': administration.id,
                    'user': request.user,
                    'scopes': ' '.join(request.scopes),
                    'prefix': token['access_token'][:6],
                    'token_hash': hash_token(token['access_token']),
                    'expires': stamp + datetime.timedelta(
                        seconds=token['expires_in']),
                    'refresh_hash': hash_token(token['refresh_token']),
                    'refresh_expires': stamp + datetime.timedelta(
                        days=REFRESH_DAYS),
                    } for administration in Administration.browse(
                    request.administrations)])


def server(pool):
    return WebApplicationServer(Validator(pool),
        token_expires_in=ACCESS_SECONDS)


# ------------------------------------------------------------- the pages

def page(language, body, status=200):
    response = Response(str(html_page(texts(language)['title'], body,
                language)), status=status,
        content_type='text/html; charset=utf-8')
    secure_headers(response)
    return response


def redirect(headers, status):
    return Response('', status=status, headers=headers)


def login_form(language, query, error=None):
    text = texts(language)
    return page(language, Markup(
            '<main><h1>{heading}</h1>{error}'
            '<form method="post"><input type="hidden" name="query" '
            'value="{query}"><p><label>{login} <input name="login" '
            'autocomplete="username" required></label></p><p><label>'
            '{password} <input type="password" name="password" '
            'autocomplete="current-password" required></label></p>'
            '<p><button name="step" value="login">{log_in}</button></p>'
            '</form></main>').format(query=query,
            error=Markup('<p role="alert">{}</p>').format(text[error])
            if error else '', **{k: text[k] for k in (
                    'heading', 'login', 'password', 'log_in')}),
        status=401 if error else 200)


def consent_form(language, query, ticket, application, administrations,
        scopes):
    text = texts(language)

    def boxes(name, choices):
        return Markup('').join(Markup(
                '<p><label><input type="checkbox" name="{name}" '
                'value="{value}" checked> {label}</label></p>').format(
                name=name, value=value, label=label)
            for value, label in choices)
    return page(language, Markup(
            '<main><h1>{asks}</h1><form method="post">'
            '<input type="hidden" name="query" value="{query}">'
            '<input type="hidden" name="ticket" value="{ticket}">'
            '<fieldset><legend>{administrations}</legend>{companies}'
            '</fieldset><fieldset><legend>{scopes}</legend>{rights}'
            '</fieldset><p><button name="step" value="grant">{grant}'
            '</button> <button name="step" value="deny">{deny}</button>'
            '</p></form></main>').format(
            asks=text['asks'] % application.name, query=query,
            ticket=ticket, administrations=text['administrations'],
            scopes=text['scopes'], grant=text['grant'], deny=text['deny'],
            companies=boxes('administration',
                [(a.id, a.rec_name) for a in administrations]),
            rights=boxes('scope', [(s, s) for s in scopes])))


def authorize_uri(request, query):
    return request.base_url + '?' + query


@app.route(PREFIX + '/oauth/authorize', methods=['GET', 'POST'])
@with_pool
@with_transaction(readonly=False)
def authorize(request, pool):
    query = request.query_string.decode() if request.method == 'GET' else (
        request.form.get('query', ''))
    oauth = server(pool)
    uri = authorize_uri(request, query)
    language = language_of(request)
    try:
        scopes, credentials = oauth.validate_authorization_request(uri)
    except OAuth2Error as error:
        # A bad client or redirect URI: never redirect (RFC 6749 4.1.2.1);
        # oauthlib's description is English only, as Payt's.
        return page(language, Markup(
                '<main><p role="alert">{}</p></main>').format(
                error.description or error.error), 400)
    if request.method == 'GET':
        return login_form(language, query)
    Application = pool.get('payt.api.application')
    application = Application.by_client_id(credentials['client_id'])
    if request.form.get('step') == 'login':
        return login_step(pool, request, language, query, application,
            scopes)
    return grant_step(pool, request, language, uri, query, application,
        scopes)


def login_step(pool, request, language, query, application, scopes):
    User = pool.get('res.user')
    Code = pool.get('payt.api.oauth.code')
    try:
        user_id = User.get_login(request.form.get('login', ''),
            {'password': request.form.get('password', '')})
    except (LoginException, RateLimitException):
        user_id = None
    if not user_id:
        return login_form(language, query, 'wrong')
    ticket = secrets.token_urlsafe(32)
    Code.create([{'application': application.id, 'user': user_id,
                'kind': 'consent', 'code_hash': hash_token(ticket),
                'expires': now() + datetime.timedelta(minutes=CODE_MINUTES)}])
    return consent_form(language, query, ticket, application,
        administrations_of(User(user_id)), scopes)


def grant_step(pool, request, language, uri, query, application, scopes):
    Code = pool.get('payt.api.oauth.code')
    consent = Code.take(application, request.form.get('ticket'), 'consent')
    if not consent:
        return login_form(language, query, 'expired')
    user = consent.user
    Code.delete([consent])
    oauth = server(pool)
    allowed = {a.id for a in administrations_of(user)}
    chosen = [int(a) for a in request.form.getlist('administration')
        if a.isdigit() and int(a) in allowed]
    granted = [s for s in request.form.getlist('scope') if s in scopes]
    if request.form.get('step') != 'grant' or not chosen or not granted:
        _, credentials = oauth.validate_authorization_request(uri)
        uri = credentials['redirect_uri']
        return redirect({'Location': uri + ('&' if '?' in uri else '?')
                + urlencode({k: v for k, v in [
                            ('error', 'access_denied'),
                            ('state', credentials.get('state'))] if v})},
            302)
    headers, _, status = oauth.create_authorization_response(uri,
        scopes=granted, credentials={'user': user.id,
            'administrations': chosen})
    return redirect(headers, status)


@app.route(PREFIX + '/oauth/token', methods=['POST'])
@with_pool
@with_transaction(readonly=False)
def token(request, pool):
    headers, body, status = server(pool).create_token_response(
        request.base_url, 'POST', request.get_data(as_text=True),
        dict(request.headers))
    response = Response(body, status=status, headers=headers,
        content_type='application/json')
    response.headers['Cache-Control'] = 'no-store'
    return response

