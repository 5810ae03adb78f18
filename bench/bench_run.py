"""The payt benchmark: bulk import, daily run, re-run, and Tryton's own
account_dunning wizard as a baseline, on PostgreSQL and/or SQLite.

    .venv/bin/python bench/bench_run.py [--items 100000] [--debtors 1000]
        [--administrations 3] [--backend postgresql|sqlite|both] [--repeat 3]

Every database is created fresh from one activated template per backend
(trytond-admin) and dropped at the end. Each phase runs in its own process
(bench/worker.py) so that memory and caches of one phase do not count in
another. Prints a table and writes docs/BENCHMARKS.md.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHON = sys.executable
PG_URI = 'postgresql://postgres@127.0.0.1:5432/'
TARGETS = {'import': 20.0, 'run_postgresql': 10.0, 'memory_mb': 500.0}


def log(message):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


class Backend:
    "Fresh databases on one backend: a template, cloned per measurement."

    def __init__(self, name, workdir, prefix, source):
        self.name = name
        self.workdir = workdir
        self.prefix = prefix
        self.databases = []
        self.env = dict(os.environ, TRYTONPASSFILE=os.path.join(
                workdir, 'admin-password'))
        self.env.pop('DB_NAME', None)
        self.env['PAYT_BENCH_SOURCE'] = source
        if name == 'postgresql':
            self.env['TRYTOND_DATABASE__URI'] = PG_URI
        else:
            self.path = os.path.join(workdir, 'sqlite')
            os.makedirs(self.path, exist_ok=True)
            self.env['TRYTOND_DATABASE__URI'] = 'sqlite://'
            self.env['TRYTOND_DATABASE__PATH'] = self.path

    # -- database files and clones ----------------------------------------
    def _pg(self, statement):
        import psycopg
        with psycopg.connect(PG_URI + 'postgres', autocommit=True) as conn:
            for attempt in range(20):
                try:
                    conn.execute(statement)
                    return
                except psycopg.errors.ObjectInUse:
                    # A worker's connection may linger for a moment.
                    time.sleep(0.5)
            conn.execute(statement)

    def _file(self, database):
        return os.path.join(self.path, database + '.sqlite')

    def create_empty(self, database):
        if self.name == 'postgresql':
            self._pg('CREATE DATABASE "%s"' % database)
        else:
            open(self._file(database), 'w').close()
        self.databases.append(database)

    def clone(self, source, database):
        if self.name == 'postgresql':
            self._pg('CREATE DATABASE "%s" TEMPLATE "%s"' % (
                    database, source))
        else:
            shutil.copyfile(self._file(source), self._file(database))
        self.databases.append(database)

    def drop(self, database):
        if self.name == 'postgresql':
            self._pg('DROP DATABASE IF EXISTS "%s"' % database)
        elif os.path.exists(self._file(database)):
            os.remove(self._file(database))
        if database in self.databases:
            self.databases.remove(database)

    def drop_all(self):
        for database in list(self.databases):
            self.drop(database)

    # -- Tryton ---------------------------------------------------------------
    def activate(self, database):
        with open(self.env['TRYTONPASSFILE'], 'w') as password:
            password.write('admin\n')
        self.create_empty(database)
        process = subprocess.run([PYTHON, os.path.join(HERE, 'worker.py'),
                'admin', '-d', database, '--all',
                '-u', 'payt_dunning', 'account_dunning',
                '--activate-dependencies'],
            # The admin email prompt: none.
            input='\n', env=self.env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        if process.returncode:
            sys.stderr.write(process.stderr[-5000:])
            raise RuntimeError('activation failed on %s' % self.name)

    def phase(self, phase, database, options, timeout=None):
        out = os.path.join(self.workdir, '%s-%s.json' % (database, phase))
        process = subprocess.run([PYTHON,
                os.path.join(HERE, 'worker.py'), phase, database, out,
                *options], env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, timeout=timeout)
        if process.returncode:
            sys.stderr.write(process.stderr[-5000:])
            raise RuntimeError('phase %s failed on %s' % (phase, self.name))
        with open(out) as result:
            return json.load(result)


def snapshot(source, workdir):
    """A copy of addons/payt_dunning that the benchmark imports, so that
    edits made meanwhile do not change the code under measurement: the
    committed tree (HEAD) or the working tree as it is now. Returns
    (path, description)."""
    path = os.path.join(workdir, 'src', 'payt_dunning')
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
        cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if source == 'HEAD':
        os.makedirs(os.path.dirname(path))
        archive = subprocess.run(['git', 'archive', 'HEAD',
                'addons/payt_dunning'], cwd=ROOT, capture_output=True,
            check=True).stdout
        subprocess.run(['tar', '-x', '--strip-components=1', '-C',
                os.path.dirname(path)], input=archive, check=True)
        return path, 'commit %s (addons/payt_dunning as committed)' % commit
    shutil.copytree(os.path.join(ROOT, 'addons', 'payt_dunning'), path,
        ignore=shutil.ignore_patterns('__pycache__'))
    dirty = subprocess.run(['git', 'status', '--short',
            'addons/payt_dunning'], cwd=ROOT, capture_output=True,
        text=True).stdout.splitlines()
    return path, 'working tree of addons/payt_dunning on commit %s%s, ' \
        'copied at the start' % (commit,
            ' with %d uncommitted files (new or changed)' % len(dirty)
            if dirty else '')


def bench_backend(name, args, workdir, source):
    backend = Backend(name, workdir, 'payt_bench_%d' % os.getpid(), source)
    data_options = ['--items', str(args.items), '--debtors',
        str(args.debtors), '--administrations', str(args.administrations),
        '--date', args.date]
    result = {'backend': name, 'repeats': []}
    template = backend.prefix + '_template'
    try:
        log('%s: activating payt_dunning and account_dunning' % name)
        start = time.perf_counter()
        backend.activate(template)
        result['activation_seconds'] = time.perf_counter() - start
        for repeat in range(args.repeat):
            database = '%s_r%d' % (backend.prefix, repeat)
            backend.clone(template, database)
            log('%s: repeat %d: import' % (name, repeat + 1))
            imported = backend.phase('import', database, data_options
                + (['--importer', args.importer] if args.importer else []))
            profiled = full = None
            if repeat == args.repeat - 1:
                if not args.no_profile:
                    profiled = backend.prefix + '_profile'
                    backend.clone(database, profiled)
                if args.full_run_timeout:
                    full = backend.prefix + '_full'
                    backend.clone(database, full)
            log('%s: repeat %d: run and re-run' % (name, repeat + 1))
            run = backend.phase('run', database, data_options)
            backend.drop(database)
            result['repeats'].append({'import': imported, 'run': run})
            log('%s: repeat %d: import %.2f s, run %.2f s, re-run %.2f s'
                % (name, repeat + 1, imported['import_total'], run['run'],
                    run['rerun']))
            if profiled:
                log('%s: profiling the run statement by statement' % name)
                result['profile'] = backend.phase('profile', profiled,
                    data_options + ['--explain'])
                backend.drop(profiled)
            if full:
                log('%s: payt.run.execute (flow run and its hooks), once, '
                    'timeout %d s' % (name, args.full_run_timeout))
                try:
                    result['full_run'] = backend.phase('fullrun', full,
                        data_options, timeout=args.full_run_timeout)
                    log('%s: payt.run.execute: %.1f s' % (
                            name, result['full_run']['run']))
                except subprocess.TimeoutExpired:
                    result['full_run'] = {'timeout': args.full_run_timeout}
                    log('%s: payt.run.execute: more than %d s' % (
                            name, args.full_run_timeout))
                backend.drop(full)
        if args.baseline_lines:
            database = backend.prefix + '_baseline'
            backend.clone(template, database)
            log('%s: baseline: account.dunning.create on %d lines'
                % (name, args.baseline_lines))
            result['baseline'] = backend.phase('baseline', database,
                ['--date', args.date, '--lines', str(args.baseline_lines)])
            backend.drop(database)
            log('%s: baseline: %.1f s' % (name, result['baseline']['seconds']))
    finally:
        if args.keep:
            log('kept databases: %s' % ', '.join(backend.databases))
        else:
            backend.drop_all()
    return summarise(result, args)


def summarise(result, args):
    repeats = result['repeats']

    def median(values):
        return statistics.median(values) if values else None

    def spread(values):
        return (min(values), max(values)) if values else (None, None)
    imports = [r['import']['import_total'] for r in repeats]
    runs = [r['run']['run'] for r in repeats]
    reruns = [r['run']['rerun'] for r in repeats]
    figures = {
        'import': median(imports), 'import_spread': spread(imports),
        'run': median(runs), 'run_spread': spread(runs),
        'rerun': median(reruns), 'rerun_spread': spread(reruns),
        'peak_rss_run_mb': max(r['run']['peak_rss_run_mb'] for r in repeats),
        'rss_before_run_mb': max(
            r['run']['rss_before_run_mb'] for r in repeats),
        'peak_rss_import_mb': max(
            r['import']['peak_rss_mb'] for r in repeats),
        }
    last = repeats[-1]
    figures['items_moved'] = last['run']['items_moved']
    figures['communications'] = last['run']['communications']
    figures['rerun_created'] = (last['run']['rerun_items_moved']
        + last['run']['rerun_communications'])
    figures['steps'] = last['run']['steps']
    breakdown = defaultdict(list)
    for r in repeats:
        for key, value in r['import']['breakdown'].items():
            breakdown[key].append(value)
    figures['import_breakdown'] = {k: median(v) for k, v in breakdown.items()}
    figures['ours_per_second'] = args.items / figures['run']
    if 'baseline' in result:
        baseline = result['baseline']
        figures['theirs_per_second'] = baseline['lines'] / baseline['seconds']
        figures['ratio'] = (figures['ours_per_second']
            / figures['theirs_per_second'])
    if 'full_run' in result:
        figures['full_run'] = result['full_run']
    result['figures'] = figures
    return result


def machine():
    info = {'nproc': os.cpu_count(), 'python': platform.python_version(),
        'platform': platform.platform()}
    with open('/proc/meminfo') as meminfo:
        for line in meminfo:
            if line.startswith('MemTotal'):
                info['ram_gb'] = round(int(line.split()[1]) / 1024 ** 2, 1)
    info['loadavg'] = os.getloadavg()
    try:
        import psycopg
        with psycopg.connect(PG_URI + 'postgres') as conn:
            info['postgresql'] = conn.execute(
                'SHOW server_version').fetchone()[0]
        info['psycopg'] = '%s (%s implementation)' % (
            psycopg.__version__, psycopg.pq.__impl__)
    except Exception as exception:  # noqa: BLE001
        info['postgresql'] = 'unavailable (%s)' % exception
    from importlib.metadata import version
    info['trytond'] = version('trytond')
    info['account_dunning'] = version('trytond_account_dunning')
    return info


def fmt(value, digits=2):
    return '-' if value is None else '%.*f' % (digits, value)


def table(results, args):
    rows = [('', *[r['backend'] for r in results])]

    def row(label, getter):
        rows.append((label, *[getter(r['figures']) for r in results]))
    n = args.repeat
    row('import %d items, s (median of %d)' % (args.items, n),
        lambda f: fmt(f['import']))
    row('  min - max', lambda f: '%s - %s' % tuple(
            fmt(v) for v in f['import_spread']))
    row('daily run, s (median of %d)' % n, lambda f: fmt(f['run']))
    row('  min - max', lambda f: '%s - %s' % tuple(
            fmt(v) for v in f['run_spread']))
    row('re-run same date, s (median)', lambda f: fmt(f['rerun']))
    row('payt.run.execute with hooks, s (once)', lambda f: (
            '> %d (timeout)' % f['full_run']['timeout']
            if 'timeout' in f.get('full_run', {})
            else fmt(f.get('full_run', {}).get('run'))))
    row('re-run created (must be 0)', lambda f: str(f['rerun_created']))
    row('items moved / communications', lambda f: '%d / %d' % (
            f['items_moved'], f['communications']))
    row('peak RSS of the run process, MB', lambda f: '%.0f (+%.0f)' % (
            f['peak_rss_run_mb'],
            f['peak_rss_run_mb'] - f['rss_before_run_mb']))
    row('ours: open items/s in the run', lambda f: '%.0f' % (
            f['ours_per_second']))
    row('account_dunning wizard: lines/s', lambda f: fmt(
            f.get('theirs_per_second'), 0))
    row('ratio ours / theirs', lambda f: (fmt(f.get('ratio'), 0) + 'x')
        if f.get('ratio') else '-')
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths))
        for r in rows)


def where_time_goes(result):
    "Markdown lines: the run's statements grouped by kind and step."
    profile = result.get('profile')
    if not profile:
        return []
    by_label = defaultdict(lambda: [0.0, 0, 0])
    for statement in profile['statements']:
        entry = by_label[statement['label']]
        entry[0] += statement['seconds']
        entry[1] += 1
        entry[2] += max(statement['rows'] or 0, 0)
    total = sum(e[0] for e in by_label.values())
    by_kind = defaultdict(float)
    for label, entry in by_label.items():
        by_kind[label.split(' (')[0].rsplit(' ', 1)[0]
            if label.startswith('update') else label.split(' (')[0]] += (
            entry[0])
    lines = ['Dry run of all administrations with every statement timed: '
        '%.2f s in total, %.2f s of it in SQL statements.' % (
            profile['dry_run_seconds'], total), '',
        '| statement kind | seconds | share |', '|---|---:|---:|']
    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        lines.append('| %s | %.2f | %.0f%% |' % (
                kind, seconds, 100 * seconds / total if total else 0))
    lines += ['', '| statement (step) | count | rows | seconds |',
        '|---|---:|---:|---:|']
    for label, (seconds, count, rows) in sorted(
            by_label.items(), key=lambda kv: -kv[1][0])[:12]:
        lines.append('| %s | %d | %d | %.3f |' % (label, count, rows, seconds))
    for plan in profile.get('plans', [])[:2]:
        lines += ['', 'EXPLAIN (ANALYZE, BUFFERS) of "%s", first '
            'administration:' % plan['label'], '', '```',
            plan['sql'][:400] + (' ...' if len(plan['sql']) > 400 else ''),
            '', plan['plan'], '```']
    return lines


def markdown(results, args, info, command, elapsed):
    lines = ['# Benchmarks', '',
        'Generated by `bench/bench_run.py` on %s in %.0f s. Do not edit by '
        'hand: rerun the benchmark (`make bench`).' % (
            datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), elapsed), '',
        'Other benchmarks: the connector hub\'s sync in '
        '[BENCHMARKS-SYNC.md](BENCHMARKS-SYNC.md), the REST API\'s bulk '
        'invoice upsert and webhooks in [BENCHMARKS-API.md]'
        '(BENCHMARKS-API.md), the sender (outbox to SMTP) in '
        '[BENCHMARKS-SENDER.md](BENCHMARKS-SENDER.md).', '',
        '## Machine', '',
        '- %s cores, %s GB RAM; %s' % (info['nproc'], info['ram_gb'],
            info['platform']),
        '- Python %s, trytond %s, trytond_account_dunning %s' % (
            info['python'], info['trytond'], info['account_dunning']),
        '- PostgreSQL %s (127.0.0.1, default configuration), psycopg %s' % (
            info['postgresql'], info.get('psycopg', '?')),
        '- load average (1, 5, 15 min) at start: %s, at the end: %s. '
        'The machine is shared: other engineers run tests concurrently, '
        'so figures are medians and the min - max spread shows the noise; '
        'with a load above the number of cores every figure is inflated' % (
            ', '.join('%.2f' % l for l in info['loadavg']),
            ', '.join('%.2f' % l for l in info.get('loadavg_end', []))
            or '?'), '',
        '- code measured: %s' % info['source'], '',
        '## Command', '', '```', command, '```', '',
        '## Results', '',
        'Data: %d open items for %d debtors over %d administrations, due '
        'dates spread from 10 days ahead to 59 days overdue on the run date '
        '(%s), so every step of the default flow (-3, +7, +14, +21, +38 '
        'days) gets items; one in twenty partly paid. Each repeat imports '
        'into a freshly cloned, freshly activated database, then runs and '
        're-runs in a separate process (so import memory does not count). '
        'Import = every `import_batch` call (one per administration, one '
        'transaction each, with the lock retry of Tryton 8 as the RPC '
        'dispatcher does it) and its commit. Run = the flow run '
        '`DailyRun(administration, date).execute()` per administration, each '
        'in its own transaction, commits included, no sending. '
        '"payt.run.execute with hooks" is the whole per-administration work '
        'of the cron (the flow run, then what other parts of the module '
        'hook on `payt.run.execute`, e.g. collection cases, and the run '
        'record), measured once on a clone of the last imported database, '
        'with a time limit.' % (args.items, args.debtors, args.administrations,
            args.date), '',
        '```', table(results, args), '```', '',
        'Targets: import <= %.0f s, run <= %.0f s on PostgreSQL, peak '
        'memory of the run < %.0f MB.' % (TARGETS['import'],
            TARGETS['run_postgresql'], TARGETS['memory_mb']), '']
    for result in results:
        f = result['figures']
        verdict = []
        verdict.append('import %s' % ('met' if f['import']
                <= TARGETS['import'] else 'MISSED'))
        if result['backend'] == 'postgresql':
            verdict.append('run %s' % ('met' if f['run']
                    <= TARGETS['run_postgresql'] else 'MISSED'))
        verdict.append('memory %s' % ('met' if f['peak_rss_run_mb']
                < TARGETS['memory_mb'] else 'MISSED'))
        lines += ['### %s' % result['backend'], '',
            'Targets: %s. Template activation took %.0f s.' % (
                ', '.join(verdict), result['activation_seconds']), '',
            'Items per step after the run (moved / skipped-over events / '
            'communications):', '']
        for lead, step in sorted(f['steps'].items(), key=lambda kv:
                int(kv[0])):
            lines.append('- %+d days, %s: %d / %d / %d' % (int(lead),
                    step['step'], step['moved'], step['skipped'],
                    step['communications']))
        lines += ['', 'Import, median seconds per part (all administrations; '
            '`validate` is pure Python):', '']
        for part, seconds in sorted(f['import_breakdown'].items(),
                key=lambda kv: -kv[1]):
            lines.append('- `%s`: %.2f' % (part, seconds))
        if 'baseline' in result:
            baseline = result['baseline']
            lines += ['', 'Baseline: Tryton\'s `account.dunning.create` '
                'wizard (`Dunning.generate_dunnings`) on %d posted, overdue '
                'receivable lines (minimal chart, fiscal year with monthly '
                'periods, a procedure with 4 levels as default procedure): '
                '%.1f s including the commit, %d dunnings created, %.0f '
                'lines/s; measured once (it takes about a minute). Ours: %.0f '
                'open items/s in the run; ratio %.0fx.' % (
                    baseline['lines'], baseline['seconds'],
                    baseline['dunnings'], f['theirs_per_second'],
                    f['ours_per_second'], f['ratio'])]
        full = f.get('full_run')
        if full:
            lines += ['', 'The whole `payt.run.execute` (flow run, then the '
                'hooks of other parts of the module on it, and the run '
                'record), once: %s.' % (
                    'more than %d s (stopped at the time limit)'
                    % full['timeout'] if 'timeout' in full
                    else '%.1f s, peak RSS %.0f MB, %s' % (full['run'],
                        full['peak_rss_run_mb'], json.dumps(
                            full.get('extra')))), '']
        lines += ['', '#### Where the time of the flow run goes', '']
        lines += where_time_goes(result) or ['(profile skipped)']
        lines.append('')
    lines += ['## How to read this', '',
        '- The run is set-based: per flow step one count, one INSERT ... '
        'SELECT of timeline events (a "skipped" event for every step an '
        'item jumps over, so a 50-day-old item gets five events), one '
        'INSERT ... SELECT per channel of communications, one of points '
        'of attention and one UPDATE of the items. Python time is '
        'negligible; the time is in PostgreSQL, mostly inserting events '
        '(about 3.4 rows per item here) and checking their foreign keys '
        '(the `Trigger for constraint` lines of the plans).',
        '- The re-run finds nothing to move: it costs the counts only.',
        '- The figures move with the load of the machine, uniformly (same '
        'plans, every statement slower). Single measurements at a load of '
        'about 2 during development, same code and data: PostgreSQL '
        'import 7.8 s, run 8.4 s, re-run 0.2 s; SQLite 2.6 s, 3.1 s, '
        '0.3 s. Both targets are met on a quiet machine; at a load of 5 or '
        'more (2 cores) they are not.',
        '- Peak RSS is `ru_maxrss` of the run process (Tryton pool loaded '
        'before the run: the "+" figure is what the run itself added).',
        '- The wizard baseline builds ORM records per line, and an assert '
        'in `ModelStorage.__init__` makes it quadratic in the batch: its '
        'rate falls as the number of lines grows (about 390 lines/s for '
        '1,000 lines, 230 for 3,000 on PostgreSQL during development), and '
        'it is faster under `python -O`.',
        '- The import is mostly Python on the client: with psycopg\'s '
        'pure-Python implementation (what the venv has) dumping the '
        'parameters of 100,000 rows costs seconds; the C implementation '
        '(`psycopg[binary]`) made the import about 40% faster in an A/B '
        'run on this machine (see the report of 2026-11-23). The run does '
        'not benefit: it is SQL-bound.',
        '- Performance changes so far: `importer.py` inserts through one '
        'prepared single-row INSERT with `executemany` instead of '
        '1,000-row INSERTs (psycopg re-parses every statement longer than '
        '4 KB: about 7 of the 12 s of the PostgreSQL import; 12.3 to 7.8 s '
        'on PostgreSQL, 3.7 to 2.6 s on SQLite, at a load of about 2), and '
        'locks the administration before validating the batch rather than '
        'after (Tryton 8 takes a lock by restarting the transaction, which '
        'validated every batch twice).', '']
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--items', type=int, default=100000)
    parser.add_argument('--debtors', type=int, default=1000)
    parser.add_argument('--administrations', type=int, default=3)
    parser.add_argument('--backend', default='both',
        choices=['postgresql', 'sqlite', 'both'])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--baseline-lines', type=int, default=6000,
        help="overdue lines for the account_dunning wizard (0: skip)")
    parser.add_argument('--date', default=datetime.date.today().isoformat(),
        help="run date (default today)")
    parser.add_argument('--source', default='worktree',
        choices=['HEAD', 'worktree'],
        help="code measured: a copy of the working tree's "
        "addons/payt_dunning taken at the start (default) or the committed "
        "one (HEAD)")
    parser.add_argument('--no-profile', action='store_true')
    parser.add_argument('--full-run-timeout', type=int, default=300,
        help="time limit of the one payt.run.execute measurement "
        "(0: skip it)")
    parser.add_argument('--keep', action='store_true',
        help="keep the databases (for inspection)")
    parser.add_argument('--output', default=os.path.join(
            ROOT, 'docs', 'BENCHMARKS.md'),
        help="markdown report ('' for none)")
    parser.add_argument('--json', help="write the raw figures here")
    parser.add_argument('--importer', help="measure this importer.py "
        "instead of the module's (before/after comparisons)")
    parser.add_argument('--render', metavar='JSON',
        help="only rewrite the report from the --json file of a run")
    args = parser.parse_args()
    if args.render:
        with open(args.render) as raw:
            raw = json.load(raw)
        vars(args).update(raw.get('args', {}))
        print(table(raw['results'], args))
        if args.output:
            with open(args.output, 'w') as out:
                out.write(markdown(raw['results'], args, raw['machine'],
                        raw.get('command', ''), raw.get('elapsed', 0)))
        return
    backends = ['postgresql', 'sqlite'] if args.backend == 'both' else [
        args.backend]
    command = ' '.join(['.venv/bin/python bench/bench_run.py']
        + sys.argv[1:])
    info = machine()
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix='payt-bench-') as workdir:
        source, info['source'] = snapshot(args.source, workdir)
        log('measuring %s' % info['source'])
        for name in backends:
            results.append(bench_backend(name, args, workdir, source))
    elapsed = time.perf_counter() - start
    info['loadavg_end'] = os.getloadavg()
    print()
    print(table(results, args))
    if args.json:
        with open(args.json, 'w') as out:
            json.dump({'machine': info, 'results': results,
                    'args': {k: v for k, v in vars(args).items()
                        if k not in ('json', 'output', 'render')},
                    'command': command, 'elapsed': elapsed}, out, indent=1,
                default=str)
    if args.output:
        with open(args.output, 'w') as out:
            out.write(markdown(results, args, info, command, elapsed))
        log('wrote %s' % args.output)


if __name__ == '__main__':
    main()
