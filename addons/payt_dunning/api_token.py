# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""Static API tokens of the REST API (api.py): one administration, a set of
scopes, stored as a SHA-256 hash, shown once by the wizard, revocable.

The API acts as the token's user within the administration's company only,
so the same access rights and record rules apply as in the web client."""
import datetime
import secrets
import time

from sql.aggregate import Count

from trytond.model import Index, ModelSQL, ModelView, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

# Importing api registers its routes on the Tryton server.
from .api import base_url
from .portal import hash_token

# Scopes as Payt names them (<resource>:<action>); those the API serves.
SCOPES = ['administrations:read', 'debtors:read', 'debtors:write',
    'invoices:read', 'invoices:write', 'payments:read', 'payment_plans:read',
    'payment_plans:write', 'messages:read', 'messages:write',
    'credit_cases:read', 'psp_transactions:read']
DEFAULT_SCOPES = ' '.join(SCOPES)
RATE_PER_SECOND = 10


class ApiToken(ModelSQL, ModelView):
    "API Token"
    __name__ = 'payt.api.token'
    __string__ = "API Token"
    name = fields.Char("Name", required=True,
        help="Who uses the token, e.g. the partner package.")
    company = fields.Many2One('company.company', "Company", required=True,
        readonly=True)
    administration = fields.Many2One('payt.administration', "Administration",
        required=True, readonly=True, ondelete='CASCADE')
    user = fields.Many2One('res.user', "Acts As", required=True,
        readonly=True,
        help="The API has this user's rights, within the administration.")
    scopes = fields.Char("Scopes", required=True, readonly=True,
        help="Space separated, e.g. invoices:read invoices:write.")
    prefix = fields.Char("Token Starts With", readonly=True)
    token_hash = fields.Char("Token Hash", required=True, readonly=True)
    application = fields.Many2One('payt.api.application', "Application",
        readonly=True, ondelete='CASCADE',
        help="Granted to this application (OAuth); empty: a static token.")
    expires = fields.Timestamp("Expires", readonly=True)
    refresh_hash = fields.Char("Refresh Token Hash", readonly=True)
    refresh_expires = fields.Timestamp("Refresh Token Expires",
        readonly=True)
    revoked = fields.Boolean("Revoked", readonly=True)
    revoked_at = fields.DateTime("Revoked At", readonly=True)
    state = fields.Function(fields.Selection([
                ('active', "Active"),
                ('revoked', "Revoked"),
                ], "State"), 'get_state')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__access__.add('administration')
        cls._buttons.update({
                'revoke': {'invisible': Eval('revoked', False),
                    'depends': ['revoked']},
                })

    @staticmethod
    def default_revoked():
        return False

    def get_state(self, name):
        return 'revoked' if self.revoked else 'active'

    @property
    def scope_list(self):
        return (self.scopes or '').split()

    @classmethod
    def issue(cls, administration, name, scopes=DEFAULT_SCOPES, user=None):
        "A new token: (record, the token itself, which is not stored)."
        token = secrets.token_urlsafe(32)
        record, = cls.create([{
                    'name': name,
                    'company': administration.company.id,
                    'administration': administration.id,
                    'user': user or Transaction().user,
                    'scopes': ' '.join(s for s in scopes.split()
                        if s in SCOPES),
                    'prefix': token[:6],
                    'token_hash': hash_token(token),
                    }])
        return record, token

    @classmethod
    def find(cls, token, administration=None):
        """The active token record of this bearer token, or None: the row
        of the administration asked for, when the token (an OAuth grant)
        has one per administration."""
        if not token or len(token) > 200:
            return None
        records = cls.search([
                ('token_hash', '=', hash_token(token)),
                ('revoked', '=', False),
                ['OR', ('expires', '=', None),
                    ('expires', '>', datetime.datetime.now())],
                ], order=[('id', 'ASC')])
        for record in records:
            if str(record.administration.id) == str(administration):
                return record
        return records[0] if records else None

    def granted(self):
        "The administrations of this token (an OAuth grant: several)."
        if not self.application:
            return [self.administration]
        return [t.administration for t in self.search([
                    ('token_hash', '=', self.token_hash),
                    ('revoked', '=', False)], order=[('id', 'ASC')])]

    @classmethod
    @ModelView.button
    def revoke(cls, tokens):
        cls.write(tokens, {'revoked': True,
                'revoked_at': datetime.datetime.now()})

    def over_rate_limit(self):
        """Count this request; True when the token made more than
        RATE_PER_SECOND requests in this second. The count lives in the
        database so that every server process shares it."""
        Hit = Pool().get('payt.api.hit')
        hit = Hit.__table__()
        cursor = Transaction().connection.cursor()
        second = int(time.time())
        cursor.execute(*hit.delete(where=(hit.token == self.id)
                & (hit.second < second - 1)))
        cursor.execute(*hit.insert([hit.token, hit.second],
                [[self.id, second]]))
        cursor.execute(*hit.select(Count(hit.id),
                where=(hit.token == self.id) & (hit.second == second)))
        return cursor.fetchone()[0] > RATE_PER_SECOND


class ApiHit(ModelSQL):
    "API Request"
    __name__ = 'payt.api.hit'
    __string__ = "API Request"
    token = fields.Many2One('payt.api.token', "Token", required=True,
        ondelete='CASCADE')
    second = fields.Integer("Second", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # the rate limit counts per token and second
        cls._sql_indexes.add(Index(t, (t.token, Index.Equality()),
                (t.second, Index.Range())))


class ApiTokenCreateStart(ModelView):
    "Create API Token"
    __name__ = 'payt.api.token.create.start'
    __string__ = "Create API Token"
    administration = fields.Many2One('payt.administration', "Administration",
        required=True)
    name = fields.Char("Name", required=True)
    scopes = fields.Char("Scopes", required=True,
        help="Space separated; available: " + DEFAULT_SCOPES)

    @staticmethod
    def default_scopes():
        return DEFAULT_SCOPES

    @staticmethod
    def default_administration():
        context = Transaction().context
        if context.get('active_model') == 'payt.administration':
            return context.get('active_id')


class ApiTokenCreateDone(ModelView):
    "API Token Created"
    __name__ = 'payt.api.token.create.done'
    __string__ = "API Token Created"
    token = fields.Char("Token", readonly=True,
        help="Shown only now: copy it into the partner package.")
    base_url = fields.Char("Base URL", readonly=True)


class ApiTokenCreate(Wizard):
    "Create API Token"
    __name__ = 'payt.api.token.create'
    start = StateView('payt.api.token.create.start',
        'payt_dunning.api_token_create_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Create", 'create_', 'tryton-ok', default=True),
            ])
    create_ = StateTransition()
    done = StateView('payt.api.token.create.done',
        'payt_dunning.api_token_create_done_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def transition_create_(self):
        Token = Pool().get('payt.api.token')
        _, self.done.token = Token.issue(self.start.administration,
            self.start.name, self.start.scopes)
        return 'done'

    def default_done(self, fields):
        return {'token': self.done.token, 'base_url': base_url()}

