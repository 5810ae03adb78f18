# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The ERP side of the connector hub (payt_hub): one link per administration
to its accounting package, the hub's resumable cursors, the installation's
partner keys and the import status that pauses an administration whose
import keeps failing.

Secrets (environment codes, partner and subscription keys) are stored in
plain Char columns that only the group "Debtor Management Connector Hub"
may read (ir.model.field.access in hub.xml). Everybody else sees and types
them through a ``*_masked`` Function field: its getter shows at most the
last three characters, its setter stores what was typed. Nothing here logs
them, and error texts stored on a link are scrubbed of them.

Where secrets go. A link never carries a URL: the hub talks to each
package's own service (ENDPOINTS), or to the one address the administrator
set for that package in the Connector Hub Settings (simulators, test
services). A consultant can therefore not send the installation's partner
key, or a link's code, anywhere else; each secret goes only to the package
it belongs to (``adapter_settings``).

payt_hub is imported lazily, inside the methods that talk to a package, so
the module loads on a server without it.
"""
import datetime
import re
from decimal import Decimal
from urllib.parse import urlencode

from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.model import (
    ModelSingleton, ModelSQL, ModelView, Unique, fields)
from trytond.model.exceptions import AccessError
from trytond.pool import Pool
from trytond.pyson import Eval, If
from trytond.rpc import RPC
from trytond.transaction import Transaction, without_check_access
from trytond.wizard import Button, StateTransition, StateView, Wizard

from .company import CompanyConsistentMixin

# Keys are the adapter names of payt_hub's registry (payt_hub.adapters.
# get_adapter(name)); kept literal so the module loads without payt_hub.
PACKAGES = [
    ('imuis', "iMUIS Online"),
    ('snelstart', "SnelStart"),
    ('exact', "Exact Online"),
    ]
PACKAGE_NAMES = dict(PACKAGES)

# The packages' own services: the only addresses the installation's
# secrets and the links' codes are sent to (adapter settings per package).
ENDPOINTS = {
    'imuis': {
        'endpoint': 'https://cloudswitch.imuisonline.com/ws1_xml.asmx',
        },
    'snelstart': {
        'base_url': 'https://b2bapi.snelstart.nl/v2/',
        'auth_url': 'https://auth.snelstart.nl/b2b/token',
        },
    'exact': {'base_url': 'https://start.exactonline.nl'},
    }
# With the administrator's override (the root of a simulator or test
# service, "http://host:port"), the same settings under that root.
OVERRIDE_PATHS = {
    'imuis': {'wsdl': '/ws1_xml.asmx?WSDL'},
    'snelstart': {'base_url': '/v2/', 'auth_url': '/b2b/token'},
    'exact': {'base_url': ''},
    }
# What the hub may store back on a link when a package rotates credentials
ROTATING = {'refresh_token', 'division', 'authorization_code'}

STATES = [
    ('draft', "Draft"),
    ('active', "Active"),
    ('failed', "Failing"),
    ('disabled', "Disabled"),
    ]
AUTOMATIC_CAUSE = 'import_failing'
RETRY_FAILED_AFTER = datetime.timedelta(hours=1)


def mask(value):
    "At most the last three characters; short secrets not at all."
    if not value:
        return ''
    if len(value) < 8:
        return '*' * 8
    return '*' * 5 + value[-3:]


def _without_urls(text):
    "The text with every address replaced: errors name no host or port."
    return re.sub(r'[a-z][a-z0-9+.-]*://\S+', '<address>', text or '')


def scrub(text, *secrets):
    """The text without any of the secrets in it, each replaced where it
    stands as a whole token only: the code 00000 is not in 4.9300000091."""
    text = text or ''
    secrets = sorted({s for s in secrets if s and len(s) >= 4},
        key=len, reverse=True)
    if not secrets:
        return text
    pattern = re.compile(r'(?<![0-9A-Za-z])(?:%s)(?![0-9A-Za-z])'
        % '|'.join(map(re.escape, secrets)))
    return pattern.sub('***', text)


class MaskedSecretsMixin:
    """Secrets shown and typed through `<field>_masked` function fields:
    written in full, read back masked."""
    __slots__ = ()

    @classmethod
    def get_masked(cls, records, names):
        result = {}
        with without_check_access():
            for name in names:
                field = name[:-len('_masked')]
                result[name] = {r.id: mask(getattr(r, field))
                    for r in cls.browse(records)}
        return result

    @classmethod
    def set_masked(cls, records, name, value):
        "Store what was typed in the secret field itself."
        field = name[:-len('_masked')]
        value = (value or '').strip() or None
        with without_check_access():
            cls.write(records, {field: value})


class HubConfiguration(
        MaskedSecretsMixin, ModelSingleton, ModelSQL, ModelView):
    "Connector Hub Settings"
    __name__ = 'payt.hub.configuration'
    __string__ = "Connector Hub Settings"
    imuis_partner_key = fields.Char("iMUIS Partner Key",
        help="The PartnerKey of this product, issued by MUIS / KING.")
    imuis_partner_key_masked = fields.Function(
        fields.Char("iMUIS Partner Key",
            help="Shown masked; type a new key to replace it."),
        'get_masked', setter='set_masked')
    snelstart_subscription_key_primary = fields.Char(
        "SnelStart Subscription Key (Primary)")
    snelstart_subscription_key_primary_masked = fields.Function(
        fields.Char("SnelStart Subscription Key (Primary)",
            help="Ocp-Apim-Subscription-Key of this product. Shown masked; "
            "type a new key to replace it."),
        'get_masked', setter='set_masked')
    snelstart_subscription_key_secondary = fields.Char(
        "SnelStart Subscription Key (Secondary)")
    snelstart_subscription_key_secondary_masked = fields.Function(
        fields.Char("SnelStart Subscription Key (Secondary)",
            help="Used after the primary key is rate limited. Shown masked; "
            "type a new key to replace it."),
        'get_masked', setter='set_masked')
    exact_client_id = fields.Char("Exact Online Client ID",
        help="The client ID of this product's app in the Exact Online App "
        "Center.")
    exact_client_secret = fields.Char("Exact Online Client Secret")
    exact_client_secret_masked = fields.Function(
        fields.Char("Exact Online Client Secret",
            help="Shown masked; type a new secret to replace it."),
        'get_masked', setter='set_masked')
    exact_redirect_uri = fields.Char("Exact Online Redirect URI",
        help="The redirect URI registered for the app; the authorization "
        "code a consultant pastes arrives there.")
    imuis_url_override = fields.Char("iMUIS Service Override",
        help="Leave empty for iMUIS itself. Only for simulators and test "
        "services: their root address, e.g. http://127.0.0.1:8081.")
    snelstart_url_override = fields.Char("SnelStart Service Override",
        help="Leave empty for SnelStart itself. Only for simulators and "
        "test services: their root address.")
    exact_url_override = fields.Char("Exact Online Service Override",
        help="Leave empty for Exact Online itself. Only for simulators and "
        "test services: their root address.")
    failure_threshold = fields.Integer("Failed Days Before Pause",
        required=True,
        domain=[('failure_threshold', '>=', 1)],
        help="After this many consecutive days on which the import failed, "
        "follow-up of the administration is paused until an import "
        "succeeds again.")

    @staticmethod
    def default_failure_threshold():
        return 3

    @classmethod
    def validate_fields(cls, configurations, field_names):
        super().validate_fields(configurations, field_names)
        for configuration in configurations:
            for package, _ in PACKAGES:
                url = getattr(configuration, '%s_url_override' % package)
                if url and not re.match(
                        r'^https?://[A-Za-z0-9.\-\[\]:]+/?$', url):
                    raise UserError(gettext(
                            'payt_dunning.msg_hub_override_root',
                            package=PACKAGE_NAMES[package], url=url))

    @classmethod
    def service(cls, package):
        """The adapter settings that say where ``package`` is: its own
        service, or the administrator's override."""
        with without_check_access():
            override = getattr(cls(1), '%s_url_override' % package, None)
        if not override:
            return dict(ENDPOINTS[package])
        root = override.rstrip('/')
        return {key: root + path
            for key, path in OVERRIDE_PATHS[package].items()}

    @classmethod
    def secrets(cls):
        "The installation's keys, for the adapters (never for display)."
        with without_check_access():
            config = cls(1)
            return {
                'imuis_partner_key': config.imuis_partner_key,
                'snelstart_subscription_key_primary':
                    config.snelstart_subscription_key_primary,
                'snelstart_subscription_key_secondary':
                    config.snelstart_subscription_key_secondary,
                'exact_client_id': config.exact_client_id,
                'exact_client_secret': config.exact_client_secret,
                'exact_redirect_uri': config.exact_redirect_uri,
                'failure_threshold': config.failure_threshold or 3,
                }


class HubLink(
        CompanyConsistentMixin, MaskedSecretsMixin, ModelSQL, ModelView):
    "Accounting Package Link"
    __name__ = 'payt.hub.link'
    __string__ = "Accounting Package Link"
    company = fields.Many2One(
        'company.company', "Company", required=True, readonly=True)
    administration = fields.Many2One(
        'payt.administration', "Administration", required=True,
        ondelete='CASCADE',
        domain=[If(Eval('company'),
                ('company', '=', Eval('company', -1)), ())],
        states={'readonly': Eval('state') == 'active'})
    package = fields.Selection(PACKAGES, "Package", required=True,
        states={'readonly': Eval('state') == 'active'})
    environment_code = fields.Char("Environment Code",
        help="iMUIS Omgevingscode, SnelStart koppelsleutel or Exact Online "
        "authorization code (readable by the connector hub only).")
    environment_code_masked = fields.Function(fields.Char(
            "Environment Code",
            states={'readonly': Eval('state') == 'active'},
            help="iMUIS: the Omgevingscode made in \"MUIS Apps\"; SnelStart: "
            "the koppelsleutel made under \"Koppelingen\"; Exact Online: "
            "the code shown after approving the app (open the "
            "authorization address). Shown masked; type a new code to "
            "replace it."),
        'get_masked', setter='set_masked')
    authorization_url = fields.Function(fields.Char(
            "Authorization Address",
            states={'invisible': Eval('package') != 'exact'},
            help="Exact Online: open this address, log in as the "
            "administration's owner and approve the app; paste the code "
            "you get as the environment code."),
        'get_authorization_url')
    refresh_token = fields.Char("Refresh Token", readonly=True,
        help="Exact Online: the link's current refresh token; it changes "
        "at every refresh (readable by the connector hub only).")
    division = fields.Char("Division", readonly=True,
        states={'invisible': Eval('package') != 'exact'},
        help="Exact Online: the administration (division) read.")
    state = fields.Selection(STATES, "State", required=True, readonly=True)
    sync_time = fields.Integer("Sync Hour",
        domain=['OR', ('sync_time', '=', None),
            [('sync_time', '>=', 0), ('sync_time', '<=', 23)]],
        help="Hour of the day (0-23) from which the daily import runs.")
    last_attempt = fields.Timestamp("Last Attempt", readonly=True)
    last_success = fields.Timestamp("Last Success", readonly=True)
    last_failure = fields.Timestamp("Last Failure", readonly=True)
    last_error = fields.Text("Last Error", readonly=True)
    consecutive_failures = fields.Integer("Consecutive Failures",
        readonly=True, help="Failed imports since the last success.")
    failing_days = fields.Integer("Failing Days", readonly=True,
        help="Days with a failed import since the last success.")
    items_imported = fields.Integer("Items Imported", readonly=True,
        help="Open items received by the last successful import.")
    cursors = fields.One2Many('payt.hub.cursor', 'link', "Cursors",
        readonly=True)
    # evidence of the last sync: both sides counted per administration
    evidence_date = fields.Timestamp("Compared At", readonly=True,
        help="When the last sync compared the package with this "
        "administration.")
    source_items = fields.Integer("Open Items in Package", readonly=True)
    source_open = fields.Char("Open in Package", readonly=True,
        help="Open amount per currency in the package at the last sync.")
    erp_items = fields.Integer("Open Items Here", readonly=True)
    erp_open = fields.Char("Open Here", readonly=True,
        help="Open amount per currency here after the last sync.")
    in_step = fields.Boolean("In Step", readonly=True,
        help="Whether the last sync found the same open items and amounts "
        "on both sides.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('administration_unique', Unique(t, t.administration),
                'payt_dunning.msg_hub_link_administration_unique'),
            ]
        cls.__rpc__.update({
                'links_to_sync': RPC(readonly=True),
                'record_result': RPC(readonly=False),
                'store_credentials': RPC(readonly=False),
                'import_page': RPC(readonly=False),
                'erp_state': RPC(readonly=True),
                'record_evidence': RPC(readonly=False),
                })
        cls._buttons.update({
                'test': {
                    'invisible': Eval('state') == 'disabled',
                    'depends': ['state'],
                    },
                'activate': {
                    'invisible': Eval('state') == 'active',
                    'depends': ['state'],
                    },
                'sync_now': {
                    'invisible': ~Eval('state').in_(['active', 'failed']),
                    'depends': ['state'],
                    },
                'disable': {
                    'invisible': Eval('state') == 'disabled',
                    'depends': ['state'],
                    },
                })

    @staticmethod
    def default_company():
        return Transaction().context.get('company')

    @staticmethod
    def default_state():
        return 'draft'

    @staticmethod
    def default_sync_time():
        return 6

    @staticmethod
    def default_consecutive_failures():
        return 0

    @staticmethod
    def default_failing_days():
        return 0

    @staticmethod
    def default_items_imported():
        return 0

    @fields.depends('administration', '_parent_administration.company')
    def on_change_administration(self):
        if self.administration:
            self.company = self.administration.company

    @classmethod
    def create(cls, vlist):
        Administration = Pool().get('payt.administration')
        vlist = [v.copy() for v in vlist]
        for values in vlist:
            if values.get('administration') and not values.get('company'):
                values['company'] = Administration(
                    values['administration']).company.id
        return super().create(vlist)

    def get_rec_name(self, name):
        return '%s (%s)' % (self.administration.rec_name,
            PACKAGE_NAMES.get(self.package, self.package))

    @classmethod
    def search_rec_name(cls, name, clause):
        return [('administration.rec_name',) + tuple(clause[1:])]

    # -- talking to the package (payt_hub) ---------------------------------
    def adapter_settings(self, secrets=None, **extra):
        """The payt_hub adapter settings of this link (holds secrets): each
        package gets its own secrets only, at its own address."""
        Configuration = Pool().get('payt.hub.configuration')
        secrets = secrets or Configuration.secrets()
        with without_check_access():
            link = self.__class__(self.id)
            code, refresh_token = link.environment_code, link.refresh_token
        if not code and not (self.package == 'exact' and refresh_token):
            raise UserError(gettext('payt_dunning.msg_hub_no_code',
                    administration=self.administration.rec_name))
        settings = Configuration.service(self.package)
        if self.package == 'imuis':
            if not secrets['imuis_partner_key']:
                raise UserError(gettext(
                        'payt_dunning.msg_hub_no_partner_key'))
            settings.update({'partner_key': secrets['imuis_partner_key'],
                    'environment': code})
        elif self.package == 'snelstart':
            if not secrets['snelstart_subscription_key_primary']:
                raise UserError(gettext(
                        'payt_dunning.msg_hub_no_subscription_key'))
            settings.update({'client_key': code,
                'subscription_key':
                    secrets['snelstart_subscription_key_primary']})
            if secrets['snelstart_subscription_key_secondary']:
                settings['secondary_key'] = (
                    secrets['snelstart_subscription_key_secondary'])
        else:
            if not (secrets['exact_client_id']
                    and secrets['exact_client_secret']
                    and secrets['exact_redirect_uri']):
                raise UserError(gettext(
                        'payt_dunning.msg_hub_no_exact_app'))
            settings.update({'client_id': secrets['exact_client_id'],
                    'client_secret': secrets['exact_client_secret'],
                    'redirect_uri': secrets['exact_redirect_uri']})
            # a freshly pasted code wins over the stored authorization
            if code:
                settings['authorization_code'] = code
            else:
                settings['refresh_token'] = refresh_token
            if self.division and not code:
                settings['division'] = int(self.division)
        settings.update(extra)
        return settings

    def _adapter(self, **extra):
        try:
            from payt_hub.adapters import get_adapter
        except ImportError:
            raise UserError(gettext('payt_dunning.msg_hub_payt_hub_missing'))
        adapter = get_adapter(self.package,
            **self.adapter_settings(**extra))
        adapter.credentials_saver = self.store_rotated
        return adapter

    def store_rotated(self, values):
        """Keep what the package rotated (Exact Online's refresh token and
        division; a used authorization code is cleared).

        Written in the current transaction: the hub stores them through
        ``store_credentials``, a transaction of its own, before using them;
        inside the ERP (Activate, Test, Import Now) a request that fails
        after the package answered loses them and the message asks for a
        new authorization."""
        values = {k: v for k, v in values.items() if k in ROTATING}
        if not values:
            return
        write = {}
        if 'refresh_token' in values:
            write['refresh_token'] = values['refresh_token']
        if 'division' in values:
            write['division'] = str(values['division'])
        if values.get('authorization_code', 'kept') is None:
            write['environment_code'] = None
        with without_check_access():
            self.__class__.write([self.__class__(self.id)], write)

    def _secrets(self):
        "Every secret this link uses, to scrub them from texts."
        Configuration = Pool().get('payt.hub.configuration')
        with without_check_access():
            link = self.__class__(self.id)
            own = [link.environment_code, link.refresh_token]
        secrets = Configuration.secrets()
        return own + [secrets['imuis_partner_key'],
            secrets['snelstart_subscription_key_primary'],
            secrets['snelstart_subscription_key_secondary'],
            secrets['exact_client_secret']]

    def _link_error(self, exc):
        "A UserError saying in words what is wrong with the link."
        reason = getattr(exc, 'reason', None) or 'unreachable'
        message = {
            'unknown_environment': 'payt_dunning.msg_hub_unknown_environment',
            'wrong_partner_key': 'payt_dunning.msg_hub_wrong_partner_key',
            'wrong_client_key': 'payt_dunning.msg_hub_wrong_client_key',
            'wrong_subscription_key':
                'payt_dunning.msg_hub_wrong_subscription_key',
            'unreachable': 'payt_dunning.msg_hub_unreachable',
            'authorization_lost': 'payt_dunning.msg_hub_authorization_lost',
            'authorization_required':
                'payt_dunning.msg_hub_authorization_lost',
            }.get(reason, 'payt_dunning.msg_hub_rejected')
        if self.package == 'exact' and reason == 'wrong_client_key':
            message = 'payt_dunning.msg_hub_wrong_exact_app'
        # the package's name, never its address: an error must not tell
        # what answers where
        return UserError(gettext(message,
                administration=self.administration.rec_name,
                package=PACKAGE_NAMES.get(self.package, self.package),
                detail=scrub(_without_urls(str(exc)), *self._secrets())))

    def check_credentials(self):
        """A real call to the package with this link's credentials; raises
        a UserError saying what is wrong. Changes nothing on the link
        (except what the package itself rotates: Exact's refresh token)."""
        try:
            from payt_hub.errors import HubError, LinkError, TransientError
        except ImportError:
            raise UserError(gettext('payt_dunning.msg_hub_payt_hub_missing'))
        adapter = self._adapter(timeout=15, attempts=2, retry_wait=0.2)
        try:
            with adapter:
                adapter.validate()
        except LinkError as exc:
            raise self._link_error(exc) from None
        except TransientError as exc:
            exc.reason = 'unreachable'
            raise self._link_error(exc) from None
        except HubError as exc:
            exc.reason = 'rejected'
            raise self._link_error(exc) from None

    @classmethod
    @ModelView.button
    def activate(cls, links):
        "Check the code with a real login to the package, then activate."
        for link in links:
            link.check_credentials()
        cls.write(links, {'state': 'active', 'last_error': None})

    @classmethod
    @ModelView.button_action('payt_dunning.wizard_hub_link_test')
    def test(cls, links):
        "Check the credentials (wizard), without changing the link."
        pass

    @classmethod
    @ModelView.button
    def disable(cls, links):
        cls.write(links, {'state': 'disabled'})

    @classmethod
    @ModelView.button
    def sync_now(cls, links):
        """Import now, in this request: the same run_sync as the hub, with
        a sink that calls the bulk entry point directly."""
        try:
            from payt_hub.errors import HubError
            from payt_hub.sync import run_sync
        except ImportError:
            raise UserError(gettext('payt_dunning.msg_hub_payt_hub_missing'))
        for link in links:
            if link.state not in ('active', 'failed'):
                raise UserError(gettext('payt_dunning.msg_hub_not_active',
                        administration=link.administration.rec_name))
            try:
                with link._adapter() as adapter:
                    result = run_sync(adapter, _ErpSink(link),
                        progress=False)
            except (HubError, UserError) as exc:
                link.book_result(False, str(exc), 0)
            else:
                link.book_result(True, None,
                    result.records.get('open_items', 0))
                if result.evidence:
                    link.book_evidence(result.evidence['source'])

    # -- a changed link starts again -------------------------------------
    #: what names the administration in the package: a change means other
    #: data, so the cursors go and an active link is validated again
    _identity = {'package', 'administration', 'environment_code'}

    @classmethod
    def write(cls, *args):
        """Package and administration of an active link stay as they are;
        the division is the package's answer, never typed; a new code
        starts the link again (see _identity_changed)."""
        actions = iter(args)
        changed = []
        for links, values in zip(actions, actions):
            cls._check_target_fixed(links, values)
            if cls._identity & set(values):
                changed += [l for l in links
                    if any(getattr(l, f) != values[f]
                        for f in cls._identity & set(values)
                        if f not in ('package', 'administration'))
                    or any(f in values for f in ('package',
                            'administration'))]
        super().write(*args)
        if changed:
            cls._identity_changed(cls.browse(changed))

    @classmethod
    def _check_target_fixed(cls, links, values):
        if 'division' in values and Transaction().check_access:
            raise AccessError(gettext(
                    'payt_dunning.msg_hub_division_from_package'))
        for link in links:
            if link.state == 'active' and link._changes_target(values):
                raise AccessError(gettext(
                        'payt_dunning.msg_hub_active_link_fixed',
                        link=link.rec_name))

    @classmethod
    def _identity_changed(cls, links):
        """A new code or URL: the cursors belong to the old data (full
        resync) and an active link must pass a real login again, or the
        change is refused as a whole."""
        Cursor = Pool().get('payt.hub.cursor')
        with without_check_access():
            Cursor.delete(Cursor.search([('link', 'in', [l.id for l in links])]))
        active = [l for l in links if l.state in ('active', 'failed')]
        if active:
            cls.activate(active)

    def get_authorization_url(self, name):
        "Exact Online's page where the owner approves the app."
        if self.package != 'exact':
            return None
        Configuration = Pool().get('payt.hub.configuration')
        secrets = Configuration.secrets()
        if not secrets['exact_client_id']:
            return None
        root = Configuration.service('exact')['base_url'].rstrip('/')
        return '%s/api/oauth2/auth?%s' % (root, urlencode({
                    'client_id': secrets['exact_client_id'],
                    'redirect_uri': secrets['exact_redirect_uri'] or '',
                    'response_type': 'code',
                    'force_login': '0',
                    }))

    def _changes_target(self, values):
        "Whether values name another package or administration."
        return (('package' in values and values['package'] != self.package)
            or ('administration' in values
                and values['administration'] != self.administration.id))

    # -- what the hub calls ------------------------------------------------
    @classmethod
    def _link_for_hub(cls, link_id):
        cls._check_hub_user()
        # searching applies the record rules: a hub user limited to some
        # companies cannot touch the links of others
        found = cls.search([('id', '=', int(link_id))], limit=1)
        if not found:
            raise AccessError(gettext('payt_dunning.msg_hub_link_unknown',
                    link=link_id))
        return found[0]

    @classmethod
    def import_page(cls, link_id, batch, cursors=None):
        """Import one batch into the link's administration and store the
        cursors ({stream: value}) that cover it, in this one transaction:
        a hub killed at any point resumes after the last page stored."""
        link = cls._link_for_hub(link_id)
        # the hub user is checked above; what follows is the module's own
        # bookkeeping of read-only fields (as a button's would be)
        with without_check_access():
            return link.import_with_cursors(batch, cursors)

    def import_with_cursors(self, batch, cursors=None):
        pool = Pool()
        Administration = pool.get('payt.administration')
        Cursor = pool.get('payt.hub.cursor')
        summary = Administration.import_batch(self.administration.id, batch)
        for stream, value in (cursors or {}).items():
            found = Cursor.search([('link', '=', self.id),
                    ('stream', '=', stream)], limit=1)
            if found:
                Cursor.write(found, {'value': value})
            else:
                Cursor.create([{'link': self.id, 'stream': stream,
                            'value': value}])
        return summary

    @classmethod
    def erp_state(cls, link_id):
        """What the hub compares the package with, of the link's
        administration: {'open': {external id: [open amount, currency]},
        'items': {external id: {debtor, number, description, invoice_date,
        due_date, currency, amount, open_amount}} of the open items,
        'debtors': [external ids], 'payments': {external id: amount}}."""
        link = cls._link_for_hub(link_id)
        return link._open_state()

    def _open_state(self):
        pool = Pool()
        Item = pool.get('payt.item')
        Debtor = pool.get('payt.debtor')
        Currency = pool.get('currency.currency')
        item, debtor = Item.__table__(), Debtor.__table__()
        currency = Currency.__table__()
        cursor = Transaction().connection.cursor()
        Payment = pool.get('payt.payment')
        payment = Payment.__table__()
        cursor.execute(*item.join(currency,
                condition=item.currency == currency.id).join(debtor,
                condition=item.debtor == debtor.id).select(
                item.external_id, item.open_amount, currency.code,
                debtor.external_id, item.number, item.description,
                item.invoice_date, item.due_date, item.amount,
                where=(item.administration == self.administration.id)
                & (item.state == 'open')))
        open_, records = {}, {}
        for (external_id, open_amount, code, debtor_id, number, description,
                invoice_date, due_date, amount) in cursor:
            open_[external_id] = ['%.2f' % Decimal(str(open_amount)), code]
            records[external_id] = {
                'debtor': debtor_id, 'number': number,
                'description': description,
                'invoice_date': _iso(invoice_date),
                'due_date': _iso(due_date), 'currency': code,
                'amount': '%.2f' % Decimal(str(amount)),
                'open_amount': open_[external_id][0],
                }
        cursor.execute(*debtor.select(debtor.external_id,
                where=debtor.administration == self.administration.id))
        debtors = [e for e, in cursor]
        cursor.execute(*payment.select(payment.external_id, payment.amount,
                where=payment.administration == self.administration.id))
        payments = {e: '%.2f' % Decimal(str(a)) for e, a in cursor}
        return {'open': open_, 'debtors': debtors, 'items': records,
            'payments': payments}

    @classmethod
    def record_evidence(cls, link_id, source):
        """Store the package's side of the last sync (``source``: {'items':
        n, 'open': {currency: amount}}) with this side counted here, and
        raise a point of attention when they differ."""
        link = cls._link_for_hub(link_id)
        with without_check_access():
            return link.book_evidence(source)

    def book_evidence(self, source):
        pool = Pool()
        Attention = pool.get('payt.attention')
        link = self
        state = link._open_state()['open']
        sums = {}
        for amount, code in state.values():
            sums[code] = sums.get(code, Decimal(0)) + Decimal(amount)
        erp_open = {c: '%.2f' % a for c, a in sorted(sums.items())}
        source_open = {c: '%.2f' % Decimal(str(a))
            for c, a in sorted((source.get('open') or {}).items())}
        in_step = (int(source.get('items') or 0) == len(state)
            and source_open == erp_open)
        self.__class__.write([link], {
                'evidence_date': datetime.datetime.now(),
                'source_items': int(source.get('items') or 0),
                'source_open': _amounts(source_open),
                'erp_items': len(state),
                'erp_open': _amounts(erp_open),
                'in_step': in_step,
                })
        if not in_step:
            Attention.raise_for(link.administration, 'import_mismatch',
                'msg_attention_import_mismatch',
                package_items=source.get('items'),
                package_open=_amounts(source_open) or '0',
                items=len(state), open=_amounts(erp_open) or '0')
        return {'in_step': in_step, 'erp_items': len(state),
            'erp_open': erp_open}

    @classmethod
    def _check_hub_user(cls):
        pool = Pool()
        User = pool.get('res.user')
        ModelData = pool.get('ir.model.data')
        if Transaction().user == 0:
            return
        if ModelData.get_id('payt_dunning', 'group_payt_hub') \
                not in User.get_groups():
            raise AccessError(gettext('payt_dunning.msg_hub_not_hub_user'))

    @classmethod
    def links_to_sync(cls, administration=None, due=False):
        """What the hub needs per link to sync: id, administration (id and
        name), package and the adapter settings (with the secrets).

        Only for users of the group "Debtor Management Connector Hub".
        ``administration``: a name or id to limit to one administration;
        ``due``: only links whose sync hour has come and that were not
        tried yet today (what the daily beat uses).
        """
        pool = Pool()
        Administration = pool.get('payt.administration')
        Configuration = pool.get('payt.hub.configuration')
        cls._check_hub_user()
        domain = [('state', 'in', ['active', 'failed'])]
        if administration not in (None, ''):
            domain.append(('administration', '=',
                    Administration.by_name(str(administration)).id))
        secrets = Configuration.secrets()
        now = datetime.datetime.now()
        result = []
        for link in cls.search(domain, order=[('id', 'ASC')]):
            if due and not link._due(now):
                continue
            try:
                settings = link.adapter_settings(secrets)
            except UserError as exc:
                settings, error = None, str(exc)
            else:
                error = None
            result.append({
                    'id': link.id,
                    'administration': link.administration.id,
                    'administration_name': link.administration.rec_name,
                    'package': link.package,
                    'settings': settings,
                    'error': error,
                    })
        return result

    def _due(self, now):
        """Once a day from the sync hour; a failing link again every
        RETRY_FAILED_AFTER the same day (the hub's own retries of a sync
        cover minutes to hours; this covers the rest of the day)."""
        if self.sync_time is not None and now.hour < self.sync_time:
            return False
        if not self.last_attempt or self.last_attempt.date() < now.date():
            return True
        return (self.state == 'failed'
            and now - self.last_attempt >= RETRY_FAILED_AFTER)

    @classmethod
    def store_credentials(cls, link_id, values):
        """The hub stores what a package rotated (Exact Online's refresh
        token, the division) before using it: its own transaction."""
        cls._check_hub_user()
        found = cls.search([('id', '=', int(link_id))], limit=1)
        if not found:
            raise AccessError(gettext('payt_dunning.msg_hub_link_unknown',
                    link=link_id))
        found[0].store_rotated(dict(values or {}))

    @classmethod
    def record_result(cls, link_id, ok, message=None, items=0):
        """The hub reports one sync of a link: ok or not, the error text and
        the number of open items received. Returns the link's status."""
        cls._check_hub_user()
        # searching applies the record rules: a hub user limited to some
        # companies cannot book results on the links of others
        found = cls.search([('id', '=', int(link_id))], limit=1)
        if not found:
            raise AccessError(gettext('payt_dunning.msg_hub_link_unknown',
                    link=link_id))
        link, = found
        with without_check_access():
            return link.book_result(bool(ok), message, int(items or 0))

    def book_result(self, ok, message, items, now=None):
        """Book one import result. After `failure_threshold` consecutive
        failed days the administration is paused (automatic cause
        import_failing) and a point of attention is raised; a success lifts
        that pause and resolves the attention."""
        pool = Pool()
        Configuration = pool.get('payt.hub.configuration')
        now = now or datetime.datetime.now()
        link = self.__class__(self.id)
        values = {'last_attempt': now}
        if ok:
            values.update({
                    'state': 'active' if link.state == 'failed'
                    else link.state,
                    'last_success': now,
                    'last_error': None,
                    'consecutive_failures': 0,
                    'failing_days': 0,
                    'items_imported': items,
                    })
            self.__class__.write([link], values)
            link._import_recovered()
        else:
            message = scrub(message, *link._secrets())[:2000] or "unknown error"
            new_day = (not link.last_failure
                or link.last_failure.date() < now.date()
                or (link.last_success and link.last_success > link.last_failure))
            failing_days = (link.failing_days or 0) + (1 if new_day else 0)
            values.update({
                    'state': 'failed' if link.state == 'active'
                    else link.state,
                    'last_failure': now,
                    'last_error': message,
                    'consecutive_failures':
                        (link.consecutive_failures or 0) + 1,
                    'failing_days': failing_days,
                    })
            self.__class__.write([link], values)
            threshold = Configuration.secrets()['failure_threshold']
            if failing_days >= threshold:
                link._import_failing(message)
        link = self.__class__(self.id)
        return {
            'id': link.id,
            'state': link.state,
            'consecutive_failures': link.consecutive_failures,
            'failing_days': link.failing_days,
            'paused': bool(link._automatic_pauses()),
            }

    def _automatic_pauses(self):
        Pause = Pool().get('payt.pause')
        return Pause.search([
                ('administration', '=', self.administration.id),
                ('debtor', '=', None),
                ('item', '=', None),
                ('state', '=', 'active'),
                ('automatic', '=', AUTOMATIC_CAUSE),
                ])

    def _import_failing(self, message):
        pool = Pool()
        Pause = pool.get('payt.pause')
        Attention = pool.get('payt.attention')
        reason = "import failing: %s" % message
        if not self._automatic_pauses():
            Pause.hold([self.administration], 'pause', reason[:1000],
                automatic=AUTOMATIC_CAUSE)
        Attention.raise_for(self.administration, 'import_failing',
            'msg_attention_import_failing', note=reason)

    def _import_recovered(self):
        pool = Pool()
        Pause = pool.get('payt.pause')
        Attention = pool.get('payt.attention')
        pauses = self._automatic_pauses()
        if pauses:
            Pause.lift(pauses)
        attentions = Attention.search([
                ('administration', '=', self.administration.id),
                ('reason', '=', 'import_failing'),
                ('state', '=', 'open'),
                ])
        if attentions:
            Attention.resolve(attentions)


class HubLinkTestResult(ModelView):
    "Link Test Result"
    __name__ = 'payt.hub.link.test.result'
    __string__ = "Link Test Result"
    message = fields.Text("Result", readonly=True)


class HubLinkTest(Wizard):
    """Check a link's credentials with a real call to its package, leaving
    the link as it is (state, code, status); a failure is shown, not
    booked."""
    __name__ = 'payt.hub.link.test'
    start = StateTransition()
    result = StateView('payt.hub.link.test.result',
        'payt_dunning.hub_link_test_result_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def transition_start(self):
        self.record.check_credentials()
        return 'result'

    def default_result(self, fields):
        return {'message': gettext('payt_dunning.msg_hub_test_ok',
                administration=self.record.administration.rec_name,
                package=PACKAGE_NAMES.get(self.record.package,
                    self.record.package))}


def _iso(value):
    "ISO text of a date read with SQL (a date, or text on SQLite)."
    if value is None:
        return None
    return value if isinstance(value, str) else value.isoformat()


def _amounts(sums):
    "'EUR 1234.50, USD 272.51' of {currency: amount}."
    return ', '.join('%s %s' % (c, a) for c, a in sorted(sums.items()))


class HubCursor(CompanyConsistentMixin, ModelSQL, ModelView):
    "Connector Hub Cursor"
    _company_path = 'link.company'
    __name__ = 'payt.hub.cursor'
    __string__ = "Connector Hub Cursor"
    link = fields.Many2One('payt.hub.link', "Link", required=True,
        ondelete='CASCADE')
    stream = fields.Char("Stream", required=True)
    value = fields.Char("Value",
        help="Where the next import of this stream continues (opaque).")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('link_stream_unique', Unique(t, t.link, t.stream),
                'payt_dunning.msg_hub_cursor_unique'),
            ]


class _ErpSink:
    "payt_hub's Sink interface inside the ERP (used by sync_now)."

    def __init__(self, link):
        self.link = link

    def import_batch(self, batch, cursors=None):
        return self.link.import_with_cursors(batch, cursors)

    def load_cursor(self, stream):
        Cursor = Pool().get('payt.hub.cursor')
        found = Cursor.search([('link', '=', self.link.id),
                ('stream', '=', stream)], limit=1)
        return found[0].value if found else None

    def _state(self):
        return self.link._open_state()

    def open_state(self):
        return {k: tuple(v) for k, v in self._state()['open'].items()}

    def debtor_ids(self):
        return set(self._state()['debtors'])

    def open_records(self):
        return self._state()['items']

    def payment_amounts(self):
        return self._state()['payments']
