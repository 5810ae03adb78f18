"""Connector hub benchmark: a first sync of ~100,000 open items and 10,000
debtors from a package simulator over HTTP into PostgreSQL through
ProteusSink (embedded trytond, the path of ``payt-hub sync --database``),
then incremental syncs after ``--changes`` changes in the package (added,
paid, credited, changed and deleted items, in equal parts); both for
SnelStart, iMUIS and Exact Online. Every sync is a full reconciliation (see
docs/CONNECTORS-HUB.md, "Convergence"); the report shows its passes and
whether both sides were equal at the end.

    .venv/bin/python bench/bench_sync.py [--open-items 100000]
        [--debtors 10000] [--repeat 1] [--changes 100]
        [--package snelstart|imuis|exact|both|all]
        [--exact-rate-limit 100000] [--backend postgresql|sqlite]
        [--write-doc]

Each package gets a fresh database (trytond-admin), a company, an
administration and an activated payt.hub.link; the simulator runs in its
own process (``payt-hub simulate``) so it does not share the GIL with the
sync. The sync runs in a worker process with timers around the adapter's
page reads (source: HTTP/SOAP + parsing), the mapping to canonical
records, the ERP's import_batch and the cursor writes. The first sync is
measured once per fresh database; re-syncs ``--repeat`` times (median).
Target: every first sync <= 60 s (PostgreSQL).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHON = sys.executable
BIN = os.path.dirname(PYTHON)
PG_URI = 'postgresql://postgres@127.0.0.1:5432/'
TARGETS = {'first': 60.0, 'resync': None}
BATCH_RECORDS = [2000]  # set from --batch-records
TEMPLATE = []  # a fresh PostgreSQL database, once set up
PARTNER_KEY = 'abcdefghijklmnopqrstuvwxyz'
ENVIRONMENT = '00000'
CLIENT_KEY = 'sim-koppelsleutel-0001'
PRIMARY_KEY = 'sim-subscription-primary'


def log(message):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


def items_for(open_items):
    "Simulators leave 6 in 77 items paid before the first sync."
    return -(-open_items * 77 // 71)


# -- the worker: one sync with timers -----------------------------------------
class Timer:
    def __init__(self):
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self.batches = []  # (kind, records, seconds) per import_batch

    def add(self, name, started):
        self.seconds[name] += time.perf_counter() - started
        self.calls[name] += 1


class TimedAdapter:
    def __init__(self, adapter, timer):
        self.adapter, self.timer = adapter, timer
        self.name = adapter.name

    def streams(self):
        return self.adapter.streams()

    def read(self, stream, cursor):
        pages = iter(self.adapter.read(stream, cursor))
        while True:
            started = time.perf_counter()
            try:
                page = next(pages)
            except StopIteration:
                self.timer.add('source', started)
                return
            self.timer.add('source', started)
            yield page

    def map(self, stream, records):
        started = time.perf_counter()
        try:
            return self.adapter.map(stream, records)
        finally:
            self.timer.add('mapping', started)

    def order_key(self, external_id):
        return self.adapter.order_key(external_id)

    def fetch_items(self, ids):
        started = time.perf_counter()
        try:
            return self.adapter.fetch_items(ids)
        finally:
            self.timer.add('source', started)

    def fetch_debtors(self, ids):
        started = time.perf_counter()
        try:
            return self.adapter.fetch_debtors(ids)
        finally:
            self.timer.add('source', started)


class TimedSink:
    def __init__(self, sink, timer):
        self.sink, self.timer = sink, timer

    def import_batch(self, batch, cursors=None):
        started = time.perf_counter()
        try:
            return self.sink.import_batch(batch, cursors)
        finally:
            self.timer.add('erp_import', started)
            kind = 'items' if batch.get('items') else (
                'payments' if batch.get('payments') else 'debtors')
            self.timer.batches.append(
                (kind, len(batch.get(kind, [])),
                 time.perf_counter() - started))

    def load_cursor(self, stream):
        started = time.perf_counter()
        try:
            return self.sink.load_cursor(stream)
        finally:
            self.timer.add('erp_cursor', started)

    def _timed(self, name):
        started = time.perf_counter()
        try:
            return getattr(self.sink, name)()
        finally:
            self.timer.add('erp_cursor', started)

    def open_state(self):
        return self._timed('open_state')

    def debtor_ids(self):
        return self._timed('debtor_ids')

    def open_records(self):
        return self._timed('open_records')

    def payment_amounts(self):
        return self._timed('payment_amounts')


def worker(database):
    "One sync of every active link, timed; prints JSON."
    from payt_hub import erp
    from payt_hub.adapters.base import get_adapter
    from payt_hub.proteus_sink import ProteusSink
    from payt_hub.sync import run_sync
    started = time.perf_counter()
    cfg = erp.connect(database=database)
    connect = time.perf_counter() - started
    link, = erp.links_to_sync(cfg)
    timer = Timer()
    started = time.perf_counter()
    sink = ProteusSink(link['administration'], link['id'], cfg)
    settings = dict(link['settings'])
    if link['package'] == 'exact' and os.environ.get('BENCH_EXACT_RATE'):
        settings['rate_limit'] = os.environ['BENCH_EXACT_RATE']
    adapter = get_adapter(link['package'], **settings)
    # Exact's rotated refresh token is committed before it is used
    adapter.credentials_saver = lambda values: erp.store_credentials(
        cfg, link['id'], values)
    with adapter:
        adapter.validate()
        timer.add('source', started)
        profile = os.environ.get('BENCH_PROFILE')
        if profile:  # --profile: where the sync's own CPU goes
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        result = run_sync(TimedAdapter(adapter, timer),
                          TimedSink(sink, timer),
                          progress=False, batch_records=erp.batch_records())
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)
    total = time.perf_counter() - started
    erp.record_result(cfg, link['id'], True, None,
                      result.records.get('open_items', 0))
    evidence = sink.record_evidence(result.evidence['source'])
    seconds = dict(timer.seconds)
    seconds['other'] = total - sum(seconds.values())
    limiter = getattr(adapter, '_limiter', None)
    print(json.dumps({'total': total, 'connect': connect,
                      'rate_waited': getattr(limiter, 'waited', 0.0),
                      'cpu': time.process_time(),
                      'batches': timer.batches,
                      'seconds': seconds, 'calls': dict(timer.calls),
                      'records': result.records,
                      'rounds': result.rounds,
                      'converged': result.converged,
                      'in_step': evidence['in_step'],
                      'evidence': result.evidence['source'],
                      'summary': result.summary}))


# -- the driver ----------------------------------------------------------------
SETUP = '''
import sys
from decimal import Decimal
from proteus import Model, config
config.set_trytond(sys.argv[1])
Currency = Model.get('currency.currency')
Party = Model.get('party.party')
Company = Model.get('company.company')
User = Model.get('res.user')
Administration = Model.get('payt.administration')
euro = Currency(name='Euro', code='EUR', symbol='EUR',
    rounding=Decimal('0.01'), digits=2)
euro.save()
Currency(name='US Dollar', code='USD', symbol='USD',
    rounding=Decimal('0.01'), digits=2).save()
party = Party(name='Bench BV')
party.save()
company = Company(party=party, currency=euro)
company.save()
admin = User(config.get_config().user)
admin.companies.append(Company(company.id))
admin.company = Company(company.id)
admin.company_filter = 'all'
admin.save()
config.get_config()._context = User.get_preferences(True, {})
Administration(company=company).save()
'''


class Database:
    def __init__(self, backend, workdir, name):
        self.backend, self.name = backend, name
        self.env = dict(os.environ, TRYTONPASSFILE=os.path.join(
                workdir, 'pass'), PYTHONUNBUFFERED='1')
        self.env.pop('DB_NAME', None)
        self.env.pop('PAYT_HUB_PAGE_SIZE', None)
        self.env['PAYT_HUB_BATCH_RECORDS'] = str(BATCH_RECORDS[0])
        with open(self.env['TRYTONPASSFILE'], 'w') as f:
            f.write('admin\n')
        if backend == 'postgresql':
            self.env['TRYTOND_DATABASE__URI'] = PG_URI
        else:
            self.env['TRYTOND_DATABASE__URI'] = 'sqlite://'
            self.env['TRYTOND_DATABASE__PATH'] = workdir
            open(os.path.join(workdir, name + '.sqlite'), 'w').close()

    def _pg(self, sql):
        import psycopg
        with psycopg.connect(PG_URI + 'postgres', autocommit=True) as conn:
            conn.execute(sql)

    def create(self):
        if self.backend == 'postgresql':
            self._pg('DROP DATABASE IF EXISTS "%s"' % self.name)
            if TEMPLATE:
                # the same fresh database as the first package's, without
                # a minute and a half of trytond-admin per package
                self._pg('CREATE DATABASE "%s" TEMPLATE "%s"' % (
                        self.name, TEMPLATE[0]))
                return
            self._pg('CREATE DATABASE "%s" TEMPLATE template0' % self.name)
        self._setup()
        if self.backend == 'postgresql':
            TEMPLATE.append(self.name + '_template')
            self._pg('CREATE DATABASE "%s" TEMPLATE "%s"' % (
                    TEMPLATE[0], self.name))

    def _setup(self):
        subprocess.run([os.path.join(BIN, 'trytond-admin'), '-d', self.name,
                        '--all', '-u', 'payt_dunning',
                        '--activate-dependencies', '--email',
                        'admin@example.com'], env=self.env, check=True,
                       capture_output=True)
        subprocess.run([PYTHON, '-c', SETUP, self.name], env=self.env,
                       check=True)

    def drop(self):
        if self.backend == 'postgresql':
            self._pg('DROP DATABASE IF EXISTS "%s"' % self.name)

    def hub(self, *args, input=None):
        out = subprocess.run([PYTHON, '-m', 'payt_hub.cli', *args],
                             env=self.env, capture_output=True, text=True,
                             input=input)
        if out.returncode:
            raise SystemExit('payt-hub %s failed: %s' % (args[0], out.stderr))
        return out.stdout

    def sync(self):
        out = subprocess.run([PYTHON, os.path.abspath(__file__), '--worker',
                              self.name], env=self.env, capture_output=True,
                             text=True)
        if out.returncode:
            raise SystemExit('sync worker failed: %s' % out.stderr[-3000:])
        return json.loads(out.stdout.strip().splitlines()[-1])


def simulator(package, debtors, items, env, exact_rate=None):
    extra = ['--rate-limit', str(exact_rate)] if exact_rate else []
    proc = subprocess.Popen(
        [PYTHON, '-m', 'payt_hub.cli', 'simulate', package, '--debtors',
         str(debtors), '--items', str(items), '--seed', '5'] + extra,
        env=env, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = line.split('http://', 1)[1].split()[0].split('/', 1)[0]
    return proc, 'http://' + url


def bench_package(package, args, workdir):
    name = 'payt_bench_sync_%s' % package
    db = Database(args.backend, workdir, name)
    log('%s: database %s on %s' % (package, name, args.backend))
    started = time.perf_counter()
    db.create()
    log('%s: database ready in %.1f s' % (
            package, time.perf_counter() - started))
    open_items = args.open_items
    if package == 'imuis' and args.imuis_open_items:
        open_items = args.imuis_open_items
    debtors = args.debtors
    if package == 'imuis' and args.imuis_debtors:
        debtors = args.imuis_debtors
    items = items_for(open_items)
    started = time.perf_counter()
    exact_rate = None
    if package == 'exact' and args.exact_rate_limit:
        # Exact allows 60 calls a minute: at 1,000 rows a page, 100,000
        # items take 100 calls a pass whatever we do. Lifted here (both
        # sides) to measure our own cost; the vendor's floor is reported.
        exact_rate = args.exact_rate_limit
        db.env['BENCH_EXACT_RATE'] = '%d/minute' % (exact_rate - 5)
    sim, url = simulator(package, debtors, items, db.env, exact_rate)
    log('%s: simulator with %d debtors, %d invoices up in %.1f s at %s' % (
            package, debtors, items, time.perf_counter() - started, url))
    try:
        db.hub('configure', '--database', name, '--imuis-partner-key',
               PARTNER_KEY, '--snelstart-primary', PRIMARY_KEY)
        if package == 'exact':
            from payt_hub.simulators.exact import (
                CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
            import httpx
            db.hub('configure', '--database', name, '--exact-client-id',
                   CLIENT_ID, '--exact-client-secret', CLIENT_SECRET,
                   '--exact-redirect-uri', REDIRECT_URI,
                   '--service-override', 'exact=' + url)
            code = httpx.post(url + '/_control/authorize', json={},
                              timeout=60).json()['code']
            db.hub('link', '--database', name, '--administration',
                   'Bench BV', '--package', 'exact', '--code', '-',
                   input=code)
        elif package == 'imuis':
            db.hub('link', '--database', name, '--administration',
                   'Bench BV', '--package', 'imuis', '--code', ENVIRONMENT,
                   '--base-url', url + '/ws1_xml.asmx?WSDL')
        else:
            db.hub('link', '--database', name, '--administration',
                   'Bench BV', '--package', 'snelstart', '--code', CLIENT_KEY,
                   '--base-url', url + '/v2/', '--auth-url',
                   url + '/b2b/token')
        log('%s: first sync ...' % package)
        if args.profile:
            db.env['BENCH_PROFILE'] = os.path.join(
                args.profile, 'bench_sync_%s.prof' % package)
        first = db.sync()
        db.env.pop('BENCH_PROFILE', None)
        first['api_calls'] = sim_state(url).get('calls')
        log('%s: first sync %.1f s %s; %s' % (
                package, first['total'], first['records'], breakdown(first)))
        log('%s: import_batch ms, first/last 3 item batches: %s' % (
                package, batch_trend(first)))
        resyncs = []
        for n in range(args.repeat):
            change(url, args.changes, n)
            resyncs.append(db.sync())
            log('%s: re-sync %d: %.2f s %s' % (
                    package, n + 1, resyncs[-1]['total'],
                    resyncs[-1]['records']))
        result = {'first': first, 'resyncs': resyncs, 'items': items}
        with open(os.path.join(tempfile.gettempdir(),
                               'bench_sync_%s.json' % package), 'w') as f:
            json.dump(result, f)
        return result
    finally:
        sim.terminate()
        sim.wait()
        if not args.keep:
            db.drop()


def sim_state(url):
    import httpx
    return httpx.post(url + '/_control/state', json={}, timeout=60).json()


def change(url, count, round_):
    """``count`` changes in the package (add, pay, credit, change, delete
    in turn), applied at the first request of the next sync."""
    import httpx
    kinds = ['add', 'pay', 'credit', 'change', 'delete']
    changes = [[1, kinds[n % 5], 1000 * round_ + n] for n in range(count)]
    httpx.post(url + '/_control/schedule', json={'changes': changes},
               timeout=60).raise_for_status()


def breakdown(run):
    parts = ('source', 'mapping', 'erp_import', 'erp_cursor', 'other')
    return ', '.join('%s %.1f s' % (p, run['seconds'].get(p, 0.0))
                     for p in parts)


def batch_trend(run, kind='items'):
    times = [1000 * sec for k, n, sec in run['batches'] if k == kind]
    if not times:
        return '-'
    return '%s ... %s (%d batches)' % (
        ' '.join('%.0f' % t for t in times[:3]),
        ' '.join('%.0f' % t for t in times[-3:]), len(times))


def median_of(runs, key=None):
    values = [r['total'] if key is None else r['seconds'].get(key, 0.0)
              for r in runs]
    return statistics.median(values)


def report(results, args, command):
    lines = ['# Connector hub sync benchmark', '',
             'Command:', '', '    ' + command, '',
             'Machine: %s, Python %s, %d CPUs. Backend: %s. Simulators run '
             'in their own process on loopback; the sync runs in one process '
             'through ProteusSink (embedded trytond, one transaction per '
             'batch), exactly the `payt-hub sync --database` path. Page '
             'sizes: SnelStart 500 ($top maximum), iMUIS 1000; pages '
             'gathered into ERP batches of %s records.' % (
                 platform.platform(), platform.python_version(),
                 os.cpu_count(), args.backend,
                 args.batch_records or 'one page ='), '',
             '| package | phase | total s | source (HTTP/SOAP + parse) s | '
             'mapping s | ERP import_batch s | ERP cursors s | other s | '
             'records | target |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | '
             '--- |']
    for package, res in results.items():
        first = res['first']
        rows = [('first sync (1 run)', first, first['total'],
                 TARGETS['first'])]
        if res['resyncs']:
            rows.append(('incremental, %d changes (median of %d)'
                         % (args.changes, len(res['resyncs'])), None,
                         median_of(res['resyncs']), TARGETS['resync']))
        for phase, run, total, target in rows:
            if run is None:
                secs = {k: median_of(res['resyncs'], k) for k in (
                        'source', 'mapping', 'erp_import', 'erp_cursor',
                        'other')}
                records = res['resyncs'][0]['records']
            else:
                secs = run['seconds']
                records = run['records']
            ok = '' if target is None else \
                'ok' if total <= target else 'MISSED'
            run_ = run or res['resyncs'][0]
            records = dict(records, passes=run_.get('rounds'),
                           in_step=run_.get('in_step'))
            lines.append('| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | '
                         '%.1f | %s | %s %s |' % (
                             package, phase, total, secs.get('source', 0),
                             secs.get('mapping', 0),
                             secs.get('erp_import', 0),
                             secs.get('erp_cursor', 0),
                             secs.get('other', 0),
                             ' '.join('%s=%s' % kv for kv in
                                      sorted(records.items())),
                             '-' if target is None else '<= %.0f s' % target,
                             ok))
    lines += ['', '"other" is batch building (`to_batch`), the comparison '
              'with the ERP and the sync loop; "ERP cursors" is reading the '
              'cursors and the ERP\'s open items (`erp_state`). Every sync '
              'lists all debtors and all open items and sends the items that '
              'differ from the ERP; a pass that sent anything is followed by '
              'another ("passes"); "in_step": the ERP\'s own count and sums '
              'equal the package\'s at the end.', '']
    for package, res in results.items():
        first = res['first']
        share = first['seconds'].get('erp_import', 0) / first['total']
        lines.append('- %s first sync: ERP import is %.0f%% of the time '
                     '(%d import_batch calls, %.0f ms each on average); '
                     'source %.0f%%.' % (
                         package, 100 * share,
                         first['calls'].get('erp_import', 0),
                         1000 * first['seconds'].get('erp_import', 0) /
                         max(1, first['calls'].get('erp_import', 1)),
                         100 * first['seconds'].get('source', 0) /
                         first['total']))
        calls = first.get('api_calls')
        if package == 'exact' and calls:
            lines.append('- exact first sync: %d API calls; at Exact\'s 60 '
                         'calls a minute these alone take at least %.0f s '
                         '(the vendor\'s floor; the simulator\'s limit is '
                         '%s here, the limiter waited %.1f s).' % (
                             calls, 60.0 * (calls - 60) / 60 if calls > 60
                             else 0, args.exact_rate_limit or 60,
                             first.get('rate_waited', 0)))
    lines.append('')
    for package, res in results.items():
        lines.append('- %s import_batch ms per item batch (page), first and '
                     'last three: %s' % (package, batch_trend(res['first'])))
    return '\n'.join(lines) + '\n'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--worker', metavar='DATABASE',
                        help=argparse.SUPPRESS)
    parser.add_argument('--open-items', type=int, default=100000)
    parser.add_argument('--debtors', type=int, default=10000)
    parser.add_argument('--imuis-open-items', type=int,
                        help='iMUIS size if different')
    parser.add_argument('--imuis-debtors', type=int)
    parser.add_argument('--batch-records', type=int, default=2000,
                        help='records per ERP batch (0: one per page)')
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--changes', type=int, default=100,
                        help='changes in the package before each '
                        'incremental sync')
    parser.add_argument('--package', default='all',
                        choices=['snelstart', 'imuis', 'exact', 'both',
                                 'all'])
    parser.add_argument('--exact-rate-limit', type=int, default=100000,
                        help="Exact simulator's calls a minute (0: "
                        "Exact's 60)")
    parser.add_argument('--backend', default='postgresql',
                        choices=['postgresql', 'sqlite'])
    parser.add_argument('--profile', metavar='DIR',
                        help='cProfile each first sync into DIR')
    parser.add_argument('--keep', action='store_true',
                        help='keep the databases')
    parser.add_argument('--write-doc', action='store_true',
                        help='write docs/BENCHMARKS-SYNC.md')
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    BATCH_RECORDS[0] = args.batch_records
    command = ' '.join(['.venv/bin/python bench/bench_sync.py'] +
                       sys.argv[1:])
    packages = {'both': ['snelstart', 'imuis'],
                'all': ['snelstart', 'imuis', 'exact']}.get(
                    args.package, [args.package])
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for package in packages:
                results[package] = bench_package(package, args, workdir)
        finally:
            for name in TEMPLATE:
                Database(args.backend, workdir, name).drop()
    text = report(results, args, command)
    print()
    print(text)
    for package, res in results.items():
        print('%s first sync: %s' % (package, breakdown(res['first'])))
    if args.write_doc:
        with open(os.path.join(ROOT, 'docs', 'BENCHMARKS-SYNC.md'),
                  'w') as f:
            f.write(text)
    with open(os.path.join(tempfile.gettempdir(), 'bench_sync.json'),
              'w') as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == '__main__':
    sys.exit(main())
