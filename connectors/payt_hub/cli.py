"""payt-hub command line: simulate, validate, link, configure, sync,
worker, beat."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .adapters.base import STREAMS
from .errors import HubError, LinkError, TransientError

#: exit codes: 2 configuration (fix the link), 75 temporary (EX_TEMPFAIL:
#: the package did not answer; try again later), 1 anything else
EXIT_CONFIGURATION, EXIT_TEMPORARY = 2, 75


def _settings(pairs):
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition('=')
        if not key or not _:
            raise SystemExit(f'--set expects key=value, got {pair!r}')
        out[key] = value
    return out


def cmd_simulate(args):
    if args.package in ('cm', 'printmail'):
        return _simulate_channel(args)
    if args.package == 'mollie':
        from .simulators.mollie import MollieSimulator
        sim = MollieSimulator().start(args.host, args.port)
        print(f'Mollie simulator: API {sim.url}/v2/ (any test_ key), '
              f'checkout pages {sim.url}/checkout/tr_...', flush=True)
        try:
            sim._thread.join()
        except KeyboardInterrupt:
            sim.stop()
        return 0
    if args.package == 'exact':
        from .simulators.exact import (CLIENT_ID, CLIENT_SECRET,
                                       REDIRECT_URI, ExactSimulator)
        sim = ExactSimulator(debtors=args.debtors, items=args.items,
                             seed=args.seed,
                             rate_limit=args.rate_limit or 60)
        sim.start(args.host, args.port)
        print(f'Exact Online simulator on {sim.url} (client id {CLIENT_ID}, '
              f'secret {CLIENT_SECRET}, redirect URI {REDIRECT_URI}); an '
              f'authorization code: POST {sim.url}/_control/authorize',
              flush=True)
    elif args.package == 'imuis':
        from .simulators.imuis import (TEST_ENVIRONMENT, TEST_PARTNER_KEY,
                                       ImuisSimulator)
        sim = ImuisSimulator(debtors=args.debtors, items=args.items,
                             seed=args.seed)
        sim.start(args.host, args.port)
        print(f'iMUIS simulator on {sim.url}/ws1_xml.asmx?WSDL '
              f'(partner key {TEST_PARTNER_KEY}, environment code '
              f'{TEST_ENVIRONMENT}); control API {sim.url}/_control/...',
              flush=True)
    else:
        from .simulators.snelstart import (CLIENT_KEY, PRIMARY_KEY,
                                           SECONDARY_KEY, SnelstartSimulator)
        sim = SnelstartSimulator(debtors=args.debtors, items=args.items,
                                 seed=args.seed)
        sim.start(args.host, args.port)
        print(f'SnelStart simulator: API {sim.url}/v2/, token '
              f'{sim.url}/b2b/token (client key {CLIENT_KEY}, subscription '
              f'keys {PRIMARY_KEY} / {SECONDARY_KEY}); control API '
              f'{sim.url}/_control/...', flush=True)
    try:
        sim._thread.join()
    except KeyboardInterrupt:
        sim.stop()
    return 0


def _simulate_channel(args):
    "The channel providers: CM.com (SMS, robocall) and print and mail."
    if args.package == 'cm':
        from .simulators.cm import PRODUCT_TOKEN, CMSimulator
        sim = CMSimulator(dlr_url=os.environ.get('PAYT_CM_DLR_URL'),
                          inbound_url=os.environ.get('PAYT_CM_INBOUND_URL'))
        sim.start(args.host, args.port)
        print(f'CM.com simulator: SMS {sim.url}/v1.0/message, voice '
              f'{sim.url}/voiceapi/v2/Notification (product token '
              f'{PRODUCT_TOKEN}); control API {sim.url}/_control/...',
              flush=True)
    else:
        from .simulators.printmail import (API_KEY, WEBHOOK_SECRET,
                                           PrintMailSimulator)
        sim = PrintMailSimulator()
        sim.start(args.host, args.port)
        print(f'Print-and-mail simulator: {sim.url}/v1/letters (key '
              f'{API_KEY}, webhook secret {WEBHOOK_SECRET}); control API '
              f'{sim.url}/_control/...', flush=True)
    try:
        sim._thread.join()
    except KeyboardInterrupt:
        sim.stop()
    return 0


def _adapter(args):
    from .adapters.base import get_adapter
    from .links import get_link, resolve
    if args.link:
        link = get_link(args.link)
        return link, link.adapter()
    if not args.adapter:
        raise SystemExit('give --link ID or --adapter NAME --set key=value')
    return None, get_adapter(args.adapter, **resolve(_settings(args.set)))


def cmd_validate(args):
    _, adapter = _adapter(args)
    with adapter:
        adapter.validate()
    print('link ok')
    return 0


def _secret_arg(value):
    """A secret from the command line: ``env:NAME`` reads $NAME, ``-``
    reads one line from stdin (so it stays out of ps and shell history)."""
    if value is None:
        return None
    from . import logsafe
    from .links import resolve
    if value == '-':
        value = sys.stdin.readline().strip()
    else:
        value = resolve({'value': value})['value']
    logsafe.register(value)  # trytond logs its SQL, values included, at DEBUG
    return value


def _erp(args):
    from .erp import connect
    return connect(database=args.database, erp_url=args.erp_url,
                   config_file=args.config)


def cmd_link(args):
    from .erp import link_administration
    cfg = _erp(args)
    out = link_administration(cfg, args.administration, args.package,
                              _secret_arg(args.code), args.base_url,
                              args.auth_url, args.sync_time)
    print(json.dumps(out, indent=2) if args.json else
          f'link {out["link"]}: {out["administration_name"]} <- '
          f'{out["package"]} (code {out["code"]}), {out["state"]}')
    return 0


def cmd_configure(args):
    from .erp import configure_keys
    cfg = _erp(args)
    exact_app = None
    if args.exact_client_id or args.exact_client_secret:
        exact_app = {'client_id': args.exact_client_id,
                     'client_secret': _secret_arg(args.exact_client_secret),
                     'redirect_uri': args.exact_redirect_uri}
    out = configure_keys(cfg, _secret_arg(args.imuis_partner_key),
                         _secret_arg(args.snelstart_primary),
                         _secret_arg(args.snelstart_secondary),
                         args.failure_threshold,
                         url_overrides=_settings(args.service_override),
                         exact_app=exact_app)
    print(json.dumps(out, indent=2))
    return 0


def cmd_sync_erp(args):
    """Sync every active link of the ERP (or one administration's)."""
    from .erp import links_to_sync, sync_link
    cfg = _erp(args)
    links = links_to_sync(cfg, args.administration)
    if args.administration and not links:
        raise LinkError(f'administration {args.administration!r} has no '
                        'active link', 'rejected')
    results = [sync_link(cfg, link, progress=None if not args.json
                         else False) for link in links]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for r in results:
            if r['ok']:
                print(f'{r["administration_name"]} ({r["package"]}): ok, '
                      f'{r["records"]}')
            else:
                status = r['status']
                print(f'{r["administration_name"]} ({r["package"]}): '
                      f'FAILED ({status["failing_days"]} day(s)'
                      f'{", administration paused" if status["paused"] else ""}'
                      f'): {r["error"]}')
    return 0 if all(r['ok'] for r in results) else 1


def cmd_sync(args):
    from .sync import MemorySink, run_sync
    if not (args.link or args.adapter) and (args.database or args.erp_url):
        return cmd_sync_erp(args)
    link, adapter = _adapter(args)
    if args.sink == 'memory':
        sink = MemorySink()
    else:
        from proteus import config as pconfig
        from .proteus_sink import ProteusSink
        if not (args.administration and args.link_id):
            raise SystemExit('--sink proteus needs --administration and '
                             '--link-id')
        cfg = pconfig.set_trytond(args.database, config_file=args.config)
        sink = ProteusSink(int(args.administration), args.link_id, cfg)
    with adapter:
        adapter.validate()
        result = run_sync(adapter, sink, streams=args.stream or None,
                          progress=None)
    out = {'pages': result.pages, 'records': result.records,
           'summary': result.summary}
    if args.sink == 'memory':
        out['open_items'] = len(sink.open_items())
        out['cursors'] = sink.cursors
    print(json.dumps(out, indent=2))
    return 0


def _extra(args):
    extra = list(args.celery_args)
    return extra[1:] if extra[:1] == ['--'] else extra


def cmd_worker(args):
    from .celery_app import app
    argv = ['worker', f'--loglevel={args.loglevel}',
            f'--concurrency={args.concurrency}', *_extra(args)]
    app.worker_main(argv)
    return 0


def cmd_beat(args):
    from .celery_app import app
    app.start(['beat', f'--loglevel={args.loglevel}', *_extra(args)])
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog='payt-hub', description=__doc__)
    p.add_argument('-v', '--verbose', action='store_true')
    sub = p.add_subparsers(dest='command', required=True)

    s = sub.add_parser('simulate', help='run a package simulator')
    s.add_argument('package', choices=['imuis', 'snelstart', 'exact',
                                       'mollie', 'cm', 'printmail'])
    s.add_argument('--host', default='127.0.0.1')
    s.add_argument('--port', type=int, default=0)
    s.add_argument('--debtors', type=int, default=20)
    s.add_argument('--items', type=int, default=50)
    s.add_argument('--seed', type=int, default=1)
    s.add_argument('--rate-limit', type=int, help='exact: calls a minute '
                   "(Exact's 60 by default; benchmarks lift it)")
    s.set_defaults(func=cmd_simulate)

    for name, func, text in (('validate', cmd_validate, 'test a link'),
                             ('sync', cmd_sync, 'sync a link')):
        s = sub.add_parser(name, help=text)
        s.add_argument('--link', help='link id in PAYT_LINKS_FILE')
        s.add_argument('--adapter', help='adapter name (imuis, snelstart)')
        s.add_argument('--set', action='append', metavar='KEY=VALUE',
                       help='adapter setting; VALUE env:NAME reads $NAME')
        if name == 'sync':
            s.add_argument('--sink', choices=['memory', 'proteus'],
                           default='memory')
            # payments come with their open items (one cumulative
            # payment per item): there is no stream of their own
            s.add_argument('--stream', action='append', choices=STREAMS)
            s.add_argument('--administration',
                           help='ERP mode: only this administration (name '
                           'or id); with --sink proteus: its id')
            s.add_argument('--link-id', type=int)
            s.add_argument('--database', help='ERP mode: trytond database; '
                           'syncs every active link of payt.hub.link')
            s.add_argument('--erp-url', help='ERP mode over XML-RPC: '
                           'https://user:password@host:8000/database/')
            s.add_argument('--config', help='trytond configuration file')
            s.add_argument('--json', action='store_true',
                           help='print the per-link results as JSON')
        s.set_defaults(func=func)

    s = sub.add_parser('link', help='link an ERP administration to its '
                       'package and activate it (real login)')
    s.add_argument('--administration', required=True, help='name or id')
    s.add_argument('--package', required=True,
                   choices=['imuis', 'snelstart', 'exact'])
    s.add_argument('--code', required=True,
                   help='Omgevingscode / koppelsleutel; env:NAME reads $NAME, '
                   '- reads stdin')
    s.add_argument('--base-url', help='simulators and test services only: '
                   "sets the installation's service override of the package "
                   'to this URL\'s scheme://host:port (administrator)')
    s.add_argument('--auth-url', help='ignored (kept for old scripts: the '
                   'override serves the token path too)')
    s.add_argument('--sync-time', type=int, help='hour of the daily sync')
    s.add_argument('--json', action='store_true')
    s.set_defaults(func=cmd_link)

    s = sub.add_parser('configure', help="set the installation's partner / "
                       'subscription keys in the ERP (write-only)')
    s.add_argument('--imuis-partner-key', help='env:NAME, - (stdin) or value')
    s.add_argument('--snelstart-primary', help='env:NAME, - or value')
    s.add_argument('--snelstart-secondary', help='env:NAME, - or value')
    s.add_argument('--failure-threshold', type=int)
    s.add_argument('--exact-client-id')
    s.add_argument('--exact-client-secret', help='env:NAME, - or value')
    s.add_argument('--exact-redirect-uri')
    s.add_argument('--service-override', action='append',
                   metavar='PACKAGE=URL', help='simulators and test '
                   'services: the root URL of a package (empty: the real '
                   'service)')
    s.set_defaults(func=cmd_configure)
    for s in (sub.choices['link'], sub.choices['configure']):
        s.add_argument('--database', help='trytond database (embedded)')
        s.add_argument('--erp-url', help='XML-RPC URL of a running server')
        s.add_argument('--config', help='trytond configuration file')

    for name, func in (('worker', cmd_worker), ('beat', cmd_beat)):
        s = sub.add_parser(name, help=f'celery {name}')
        s.add_argument('--loglevel', default='INFO')
        if name == 'worker':
            s.add_argument('--concurrency', type=int, default=2)
        s.add_argument('celery_args', nargs=argparse.REMAINDER)
        s.set_defaults(func=func)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else
                        logging.WARNING,
                        format='%(asctime)s %(levelname)s %(name)s: '
                               '%(message)s')
    from . import logsafe
    logsafe.install()
    try:
        return args.func(args)
    except TransientError as exc:
        print(f'temporary error, try again later: {exc}', file=sys.stderr)
        return EXIT_TEMPORARY
    except LinkError as exc:
        print(f'link error ({exc.reason}): {exc}', file=sys.stderr)
        return EXIT_CONFIGURATION
    except HubError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
