"""payt-hub command line: simulate, validate, sync, worker, beat."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from .errors import HubError, LinkError


def _settings(pairs):
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition('=')
        if not key or not _:
            raise SystemExit(f'--set expects key=value, got {pair!r}')
        out[key] = value
    return out


def cmd_simulate(args):
    if args.package == 'imuis':
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


def cmd_sync(args):
    from .sync import MemorySink, run_sync
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
        sink = ProteusSink(args.administration, args.link_id, cfg)
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
    s.add_argument('package', choices=['imuis', 'snelstart'])
    s.add_argument('--host', default='127.0.0.1')
    s.add_argument('--port', type=int, default=0)
    s.add_argument('--debtors', type=int, default=20)
    s.add_argument('--items', type=int, default=50)
    s.add_argument('--seed', type=int, default=1)
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
            s.add_argument('--stream', action='append',
                           choices=['debtors', 'open_items', 'payments'])
            s.add_argument('--administration', type=int)
            s.add_argument('--link-id', type=int)
            s.add_argument('--database')
            s.add_argument('--config')
        s.set_defaults(func=func)

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
    except LinkError as exc:
        print(f'link error ({exc.reason}): {exc}', file=sys.stderr)
        return 2
    except HubError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
