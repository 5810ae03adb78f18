"""The hub against the ERP: links from ``payt.hub.link``, one sync per link
into ``payt.administration.import_batch`` through ProteusSink, the result
booked back with ``payt.hub.link.record_result`` (status, auto-pause).

Connection (proteus):

* embedded trytond (default): ``connect(database='payt')``, trytond's own
  configuration (``TRYTOND_CONFIG`` / ``--config`` file, ``TRYTOND_DATABASE__URI``
  …); runs as user ``admin`` unless ``PAYT_ERP_USER`` says otherwise;
* a running server: ``connect(erp_url='https://user:pass@host:8000/db/')``
  (XML-RPC; the user must be in the group "Debtor Management Connector
  Hub").

The environment variables ``PAYT_DATABASE``, ``PAYT_ERP_URL`` and
``PAYT_TRYTOND_CONFIG`` give the same for the Celery worker.
"""
from __future__ import annotations

import logging
import os
import threading

from .errors import HubError, LinkError, TransientError

log = logging.getLogger(__name__)

SECRET_SETTINGS = ('partner_key', 'environment', 'client_key',
                   'subscription_key', 'secondary_key', 'client_secret',
                   'refresh_token', 'authorization_code')

_configs: dict = {}
_lock = threading.Lock()


def erp_configured() -> bool:
    return bool(os.environ.get('PAYT_DATABASE') or
                os.environ.get('PAYT_ERP_URL'))


def connect(database=None, erp_url=None, config_file=None, user=None):
    """A proteus config for the ERP (cached per process and target)."""
    from proteus import config as pconfig
    database = database or os.environ.get('PAYT_DATABASE')
    erp_url = erp_url or os.environ.get('PAYT_ERP_URL')
    config_file = config_file or os.environ.get('PAYT_TRYTOND_CONFIG')
    user = user or os.environ.get('PAYT_ERP_USER') or 'admin'
    key = (database, erp_url, config_file, user, threading.get_ident())
    with _lock:
        cfg = _configs.get(key)
    if cfg is None:
        if erp_url:
            cfg = pconfig.set_xmlrpc(erp_url)
        elif database:
            cfg = pconfig.set_trytond(database, user=user,
                                      config_file=config_file)
        else:
            raise HubError('no ERP given: --database NAME or --erp-url URL '
                           '(or PAYT_DATABASE / PAYT_ERP_URL)')
        with _lock:
            _configs[key] = cfg
    else:
        pconfig._CONFIG.current = cfg
    return cfg


def _model(cfg, name):
    from proteus import Model
    return Model.get(name, config=cfg)


def erp_message(exc) -> str:
    """The user-facing text of an error raised by the ERP (embedded
    trytond UserError, or an XML-RPC Fault)."""
    message = getattr(exc, 'message', None)
    if isinstance(message, str) and message:
        return message
    fault = getattr(exc, 'faultString', None)
    if fault:
        return str(fault)
    args = getattr(exc, 'args', ())
    if args and isinstance(args[0], str):
        return args[0]
    return str(exc) or type(exc).__name__


def _is_erp_error(exc) -> bool:
    import xmlrpc.client
    if isinstance(exc, xmlrpc.client.Fault):
        return True
    try:
        from trytond.exceptions import TrytonException
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, TrytonException)


def batch_records() -> int | None:
    """Records per ERP batch (pages gathered): PAYT_HUB_BATCH_RECORDS,
    default 2000; 0 sends one batch per page."""
    value = int(os.environ.get('PAYT_HUB_BATCH_RECORDS', '2000') or 0)
    return value or None


def links_to_sync(cfg, administration=None, due=False) -> list[dict]:
    from . import logsafe
    Link = _model(cfg, 'payt.hub.link')
    try:
        links = Link.links_to_sync(administration, due, cfg.context)
    except Exception as exc:
        if _is_erp_error(exc):
            raise HubError(erp_message(exc)) from None
        raise
    logsafe.install()
    for link in links:
        logsafe.register(*(value for key, value in
                           (link.get('settings') or {}).items()
                           if key in SECRET_SETTINGS))
    return links


def store_credentials(cfg, link_id, values) -> None:
    "Commit what the package rotated on the link (its own transaction)."
    Link = _model(cfg, 'payt.hub.link')
    Link.store_credentials(link_id, values, cfg.context)


def record_result(cfg, link_id, ok, message=None, items=0) -> dict:
    Link = _model(cfg, 'payt.hub.link')
    return Link.record_result(link_id, ok, message, items, cfg.context)


def sync_link(cfg, link: dict, progress=None, raise_transient=False) -> dict:
    """Sync one link (a dict from ``links_to_sync``) and book the result.

    Returns {link, administration, package, ok, error, records, summary,
    status}. With ``raise_transient`` a TransientError is re-raised after
    being booked (for Celery's retry)."""
    from .adapters.base import get_adapter
    from .proteus_sink import ProteusSink
    from .retry import sync_settings
    from .sync import run_sync
    out = {'link': link['id'], 'administration': link['administration'],
           'administration_name': link.get('administration_name'),
           'package': link['package'], 'ok': False, 'error': None,
           'records': {}, 'summary': {}}
    transient = None
    try:
        if link.get('error') or not link.get('settings'):
            raise LinkError(link.get('error') or 'link not configured')
        settings = sync_settings(link['settings'])
        if os.environ.get('PAYT_HUB_PAGE_SIZE'):  # operations / tests
            settings['page_size'] = int(os.environ['PAYT_HUB_PAGE_SIZE'])
        adapter = get_adapter(link['package'], **settings)
        # rotated credentials (Exact's refresh token) are committed in the
        # ERP before the adapter uses them
        adapter.credentials_saver = lambda values: store_credentials(
            cfg, link['id'], values)
        with adapter:
            adapter.validate()
            # the ERP is read only once the package has answered
            sink = ProteusSink(link['administration'], link['id'], cfg)
            result = run_sync(adapter, sink, progress=progress,
                              batch_records=batch_records())
        if result.evidence:
            out['evidence'] = dict(result.evidence, erp=sink.record_evidence(
                result.evidence['source']))
    except HubError as exc:
        out['error'] = str(exc)
        if isinstance(exc, LinkError):
            out['reason'] = exc.reason
        if isinstance(exc, TransientError):
            # not a configuration error, also when it happens while the
            # link is checked: say so, and let Celery retry it
            transient = exc
            out['transient'] = True
            out['error'] = f'temporary error, retried later: {exc}'
    except Exception as exc:
        if not _is_erp_error(exc):
            raise
        out['error'] = f'the ERP refused a batch: {erp_message(exc)}'
    else:
        out.update(ok=True, records=result.records, summary=result.summary)
    if out['ok']:
        log.info('link %s synced: %s', link['id'], out['records'])
    else:
        log.warning('link %s failed: %s', link['id'], out['error'])
    out['status'] = record_result(
        cfg, link['id'], out['ok'], out['error'],
        out['records'].get('open_items', 0))
    if transient is not None and raise_transient:
        raise transient
    return out


def link_administration(cfg, administration, package, code, base_url=None,
                        auth_url=None, sync_time=None) -> dict:
    """Create or update the link of an administration and activate it (a
    real login to the package). Raises LinkError with the ERP's message
    when the package refuses."""
    Administration = _model(cfg, 'payt.administration')
    Link = _model(cfg, 'payt.hub.link')
    found = Administration.find([('name', '=', administration)], limit=1)
    if not found and str(administration).isdigit():
        found = Administration.find([('id', '=', int(administration))])
    if not found:
        known = ', '.join(a.name for a in Administration.find([]))
        raise LinkError(f'no administration named {administration!r} '
                        f'(known: {known or "none"})', 'rejected')
    admin = found[0]
    links = Link.find([('administration', '=', admin.id)], limit=1)
    link = links[0] if links else Link(administration=admin)
    if base_url:  # a simulator or test service: the installation's override
        configure_keys(cfg, url_overrides={package: service_root(base_url)})
    link.package = package
    link.environment_code_masked = code
    if sync_time is not None:
        link.sync_time = sync_time
    try:
        link.save()
        link.click('activate')
    except Exception as exc:
        if _is_erp_error(exc):
            raise LinkError(erp_message(exc), 'rejected') from None
        raise
    link.reload()
    return {'link': link.id, 'administration': admin.id,
            'administration_name': admin.name, 'package': link.package,
            'state': link.state, 'code': link.environment_code_masked}


def service_root(url) -> str:
    "scheme://host:port of a URL: a simulator serves every path of it."
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    return f'{parts.scheme}://{parts.netloc}'


def configure_keys(cfg, imuis_partner_key=None, snelstart_primary=None,
                   snelstart_secondary=None, failure_threshold=None,
                   url_overrides=None, exact_app=None):
    """Set the installation's partner/subscription keys (write-only), the
    Exact Online app (client_id, client_secret, redirect_uri) and the
    service overrides per package (simulators; '' for the real one)."""
    Configuration = _model(cfg, 'payt.hub.configuration')
    config = Configuration(1)
    for package, url in (url_overrides or {}).items():
        setattr(config, f'{package}_url_override', url or None)
    if exact_app:
        config.exact_client_id = exact_app.get('client_id')
        config.exact_client_secret_masked = exact_app.get('client_secret')
        config.exact_redirect_uri = exact_app.get('redirect_uri')
    if imuis_partner_key is not None:
        config.imuis_partner_key_masked = imuis_partner_key
    if snelstart_primary is not None:
        config.snelstart_subscription_key_primary_masked = snelstart_primary
    if snelstart_secondary is not None:
        config.snelstart_subscription_key_secondary_masked = \
            snelstart_secondary
    if failure_threshold is not None:
        config.failure_threshold = int(failure_threshold)
    config.save()
    config.reload()
    return {'imuis_partner_key': config.imuis_partner_key_masked,
            'snelstart_subscription_key_primary':
                config.snelstart_subscription_key_primary_masked,
            'snelstart_subscription_key_secondary':
                config.snelstart_subscription_key_secondary_masked,
            'failure_threshold': config.failure_threshold}
