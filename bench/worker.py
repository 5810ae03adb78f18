"""One phase of the benchmark, in its own process (so that memory and caches
of one phase do not count in another). Called by bench_run.py:

    python bench/worker.py PHASE DATABASE OUT.json [options]

The backend comes from TRYTOND_DATABASE__URI (and TRYTOND_DATABASE__PATH for
SQLite). Every phase writes its figures as JSON to OUT.json.
"""
import argparse
import datetime
import functools
import json
import os
import resource
import sys
import time
from collections import defaultdict
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def use_source(path):
    """Import trytond.modules.payt_dunning from path (a snapshot taken by
    bench_run.py) instead of the working tree, which other engineers edit
    while the benchmark runs: repoint the editable install's finder."""
    for name, module in list(sys.modules.items()):
        if name.startswith('__editable___payt_dunning') and hasattr(
                module, 'MAPPING'):
            module.MAPPING['trytond.modules.payt_dunning'] = path
            return
    raise RuntimeError("payt_dunning is not installed editable")


if os.environ.get('PAYT_BENCH_SOURCE'):
    use_source(os.environ['PAYT_BENCH_SOURCE'])

import trytond.config  # noqa: E402,F401 (reads TRYTOND_*)
from trytond.pool import Pool  # noqa: E402
from trytond.transaction import Transaction  # noqa: E402

import data  # noqa: E402

ADMIN = 1


def rss_mb():
    "Peak resident set size of this process so far, in MB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_pool(database):
    Pool.start()
    pool = Pool(database)
    pool.init()
    return pool


def timed(sink, key, function):
    "Wrap function so that its wall time accumulates in sink[key]."
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            sink[key] += time.perf_counter() - start
    return wrapper


def in_transaction(database, function, context=None):
    """function() in its own transaction, committed, retried the way the RPC
    dispatcher retries: Tryton 8 takes record locks (Model.lock) by
    restarting the transaction with the lock requested up front.
    Returns (result, seconds including the commit, attempts)."""
    from trytond.transaction import TransactionError
    extras, attempts = {}, 0
    start = time.perf_counter()
    while True:
        attempts += 1
        with Transaction().start(database, ADMIN, context=context,
                **extras) as transaction:
            try:
                result = function()
            except TransactionError as error:
                transaction.rollback()
                error.fix(extras)
                continue
            transaction.commit()
            return result, time.perf_counter() - start, attempts


def company_context(administration):
    company = administration.company.id
    return {'company': company, 'companies': [company]}


def administrations():
    Administration = Pool().get('payt.administration')
    return Administration.search([], order=[('id', 'ASC')])


# -- import -----------------------------------------------------------------
def use_importer(path):
    """Replace the module's importer by another version of importer.py (to
    measure before/after a change without touching the working tree)."""
    import importlib.util
    from trytond.modules.payt_dunning import importer
    spec = importlib.util.spec_from_file_location(
        'trytond.modules.payt_dunning.importer', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    importer.BatchImporter = module.BatchImporter


def phase_import(database, args):
    from trytond.modules.payt_dunning.tests.tools import create_administration
    start_pool(database)
    if args.importer:
        use_importer(args.importer)
    from trytond.modules.payt_dunning.importer import BatchImporter
    run_date = datetime.date.fromisoformat(args.date)
    result = {}
    with Transaction().start(database, ADMIN) as transaction:
        for a in range(args.administrations):
            create_administration("Benchmark Administration %d BV" % a)
        transaction.commit()
    batches = data.batches(args.items, args.debtors, args.administrations,
        run_date)
    breakdown = defaultdict(float)
    for name in ['validate', '_upsert_debtors', '_upsert_items', '_close',
            '_insert_payments']:
        setattr(BatchImporter, name,
            timed(breakdown, name, getattr(BatchImporter, name)))
    with Transaction().start(database, ADMIN):
        targets = [(a.id, company_context(a)) for a in administrations()]
    Administration = Pool(database).get('payt.administration')
    summaries, total, attempts = [], 0, 0
    for (administration_id, context), batch in zip(targets, batches):
        summary, seconds, tries = in_transaction(database,
            functools.partial(Administration.import_batch,
                administration_id, batch), context)
        summaries.append(summary)
        total += seconds
        attempts += tries
    result.update(import_total=total, attempts=attempts,
        breakdown=dict(breakdown),
        items_created=sum(s['items_created'] for s in summaries),
        debtors_created=sum(s['debtors_created'] for s in summaries),
        peak_rss_mb=rss_mb())
    return result


# -- run and re-run ---------------------------------------------------------
def execute_all(database, run_date, full=False):
    """Run every administration, each in its own transaction, like the cron.
    full=False: the flow run, DailyRun(administration, date).execute();
    full=True: payt.run.execute, the flow run plus whatever other parts of
    the module hook on it (collection cases, ...) and the run record."""
    from trytond.modules.payt_dunning.run import DailyRun
    Run = Pool(database).get('payt.run')
    Administration = Pool(database).get('payt.administration')
    with Transaction().start(database, ADMIN):
        targets = [(a.id, company_context(a)) for a in administrations()]
    summaries, total = [], 0
    for administration_id, context in targets:
        def function(administration_id=administration_id):
            administration = Administration(administration_id)
            if full:
                return Run.execute(administration, run_date)
            return DailyRun(administration, run_date).execute()
        summary, seconds, _ = in_transaction(database, function, context)
        summaries.append(summary)
        total += seconds
    return summaries, total


def step_totals(summaries):
    totals = {}
    for summary in summaries:
        for step in summary['steps']:
            entry = totals.setdefault(step['lead_days'], {
                    'step': step['step'], 'moved': 0, 'skipped': 0,
                    'communications': 0})
            entry['moved'] += step['moved']
            entry['skipped'] += (step['skipped_overtaken']
                + step['skipped_below_minimum'])
            entry['communications'] += sum(step['communications'].values())
    return totals


def phase_run(database, args):
    "The flow run, then a re-run for the same date."
    start_pool(database)
    run_date = datetime.date.fromisoformat(args.date)
    result = {}
    rss_before = rss_mb()
    summaries, result['run'] = execute_all(database, run_date)
    result['rss_before_run_mb'] = rss_before
    result['peak_rss_run_mb'] = rss_mb()
    result['items_moved'] = sum(s['items_moved'] for s in summaries)
    result['communications'] = sum(s['communications'] for s in summaries)
    result['steps'] = step_totals(summaries)
    summaries, result['rerun'] = execute_all(database, run_date)
    result['rerun_items_moved'] = sum(s['items_moved'] for s in summaries)
    result['rerun_communications'] = sum(
        s['communications'] for s in summaries)
    result['peak_rss_mb'] = rss_mb()
    return result


def phase_fullrun(database, args):
    "payt.run.execute once (the cron's work per administration, no sending)."
    start_pool(database)
    run_date = datetime.date.fromisoformat(args.date)
    rss_before = rss_mb()
    summaries, seconds = execute_all(database, run_date, full=True)
    return {'run': seconds, 'rss_before_run_mb': rss_before,
        'peak_rss_run_mb': rss_mb(),
        'items_moved': sum(s.get('items_moved', 0) for s in summaries),
        'extra': [{k: v for k, v in s.items() if k not in (
                        'steps', 'administration', 'administration_id',
                        'date', 'state', 'items_moved', 'communications',
                        'dry_run', 'resumed')} for s in summaries]}


# -- where the time of the run goes -----------------------------------------
class TimingCursor:
    "Times every statement; optionally EXPLAIN ANALYZEs it first (PG)."

    def __init__(self, cursor, log, label, explain):
        self._cursor = cursor
        self._log = log
        self._label = label
        self._explain = explain

    def execute(self, sql, params=None):
        plan = None
        if self._explain:
            self._cursor.execute('SAVEPOINT payt_bench_explain')
            self._cursor.execute(
                'EXPLAIN (ANALYZE, BUFFERS) ' + sql, params)
            plan = '\n'.join(r[0] for r in self._cursor.fetchall())
            self._cursor.execute('ROLLBACK TO SAVEPOINT payt_bench_explain')
        start = time.perf_counter()
        result = self._cursor.execute(sql, params)
        self._log.append({'label': self._label[0],
                'sql': sql, 'seconds': time.perf_counter() - start,
                'rows': self._cursor.rowcount, 'plan': plan})
        return result

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __iter__(self):
        return iter(self._cursor)


def phase_profile(database, args):
    """Dry runs (rolled back) with every statement timed, then on PostgreSQL
    a second dry run with EXPLAIN ANALYZE of every statement."""
    from trytond.modules.payt_dunning import run as run_module
    from trytond import backend
    start_pool(database)
    run_date = datetime.date.fromisoformat(args.date)
    DailyRun = run_module.DailyRun
    log, label, explain = [], ['setup'], [False]
    original_init = DailyRun.__init__

    def init(self, administration, date):
        original_init(self, administration, date)
        self.cursor = TimingCursor(self.cursor, log, label, explain[0])
    DailyRun.__init__ = init

    def labelled(name, function):
        @functools.wraps(function)
        def wrapper(self, index, step, *args, **kwargs):
            label[0] = '%s %+d' % (name, step.lead_days) if name else (
                'step %+d' % step.lead_days)
            return function(self, index, step, *args, **kwargs)
        return wrapper

    def labelled_step(name, function):
        @functools.wraps(function)
        def wrapper(self, step, *args, **kwargs):
            previous = label[0]
            label[0] = '%s (%+d)' % (name, step.lead_days)
            try:
                return function(self, step, *args, **kwargs)
            finally:
                label[0] = previous
        return wrapper
    DailyRun._move_to = labelled('update items', DailyRun._move_to)
    for name, pretty in [('_count', 'count'), ('_insert_events', 'events'),
            ('_insert_communications', 'communications'),
            ('_insert_below_minimum_attention', 'attentions')]:
        setattr(DailyRun, name, labelled_step(pretty, getattr(DailyRun, name)))
    result = {}

    def dry_run(administration):
        "The flow run in a savepoint, rolled back."
        cursor = Transaction().connection.cursor()
        cursor.execute('SAVEPOINT payt_bench_profile')
        try:
            DailyRun(administration, run_date).execute()
        finally:
            cursor.execute('ROLLBACK TO SAVEPOINT payt_bench_profile')
            run_module.invalidate_caches()
    with Transaction().start(database, ADMIN,
            _lock_tables=['payt_administration']) as transaction:
        administrations()
        start = time.perf_counter()
        for administration in administrations():
            label[0] = 'setup'
            with transaction.set_context(company_context(administration)):
                dry_run(administration)
        result['dry_run_seconds'] = time.perf_counter() - start
        result['statements'] = [dict(e, plan=None) for e in log]
        if backend.name == 'postgresql' and args.explain:
            log.clear()
            explain[0] = True
            first = administrations()[0]
            with transaction.set_context(company_context(first)):
                dry_run(first)
            result['plans'] = sorted(log, key=lambda e: -e['seconds'])[:3]
        transaction.rollback()
    return result


def copy_move_lines(move, copies, parties, run_date):
    """Copy the lines of a posted, balanced move `copies` times into the same
    move (it stays balanced), each copy with other parties and maturity
    dates."""
    table = Pool().get('account.move.line').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.select(where=table.move == move.id))
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    columns = [n for n in names if n != 'id']
    values = []
    for copy in range(1, copies + 1):
        for i, row in enumerate(rows):
            row = dict(row)
            if row['party'] is not None:
                row['party'] = parties[(copy * 100 + i) % len(parties)].id
                row['maturity_date'] = run_date - datetime.timedelta(
                    days=7 + (copy * 100 + i) % 53)
            values.append([row[c] for c in columns])
    for start in range(0, len(values), 1000):
        cursor.execute(*table.insert([getattr(table, c) for c in columns],
                values[start:start + 1000]))


# -- Tryton's own account_dunning ---------------------------------------------
def phase_baseline(database, args):
    """Tryton's account.dunning.create wizard on args.lines overdue
    receivable lines."""
    from trytond.modules.company.tests.test_module import create_company
    from trytond.modules.account.tests.test_module import (
        create_chart, get_fiscalyear)
    from trytond.modules.payt_dunning.tests.tools import get_euro
    pool = start_pool(database)
    run_date = datetime.date.fromisoformat(args.date)
    result = {'lines': args.lines}
    with Transaction().start(database, 0) as transaction:
        User = pool.get('res.user')
        company = create_company("Baseline Company", currency=get_euro())
        User.write([User(ADMIN)], {
                'companies': [('add', [company.id])],
                'company': company.id})
        transaction.commit()
        company_id = company.id
    context = {'company': company_id, 'companies': [company_id]}

    def setup():
        company = pool.get('company.company')(company_id)
        FiscalYear = pool.get('account.fiscalyear')
        Account = pool.get('account.account')
        Journal = pool.get('account.journal')
        Move = pool.get('account.move')
        Party = pool.get('party.party')
        Procedure = pool.get('account.dunning.procedure')
        Configuration = pool.get('account.configuration')
        create_chart(company)
        fiscalyear = get_fiscalyear(company, today=run_date,
            start_date=run_date - datetime.timedelta(days=365),
            end_date=run_date + datetime.timedelta(days=30))
        fiscalyear.save()
        FiscalYear.create_period([fiscalyear])
        receivable, = Account.search([
                ('type.receivable', '=', True),
                ('party_required', '=', True),
                ('closed', '!=', True),
                ('company', '=', company.id)], limit=1)
        revenue, = Account.search([
                ('type.revenue', '=', True),
                ('closed', '!=', True),
                ('company', '=', company.id)], limit=1)
        journal, = Journal.search([('code', '=', 'REV')], limit=1)
        procedure, = Procedure.create([{
                    'name': "Procedure",
                    'levels': [('create', [
                                {'overdue': datetime.timedelta(days=d)}
                                for d in (7, 14, 21, 38)])],
                    }])
        configuration = Configuration(1)
        configuration.default_dunning_procedure = procedure
        configuration.save()
        parties = Party.create([{'name': "Debtor %d" % i}
                for i in range(min(args.lines, 1000))])
        # One posted move of 100 overdue receivable lines (and its revenue
        # line) made by the ORM, then copied by SQL up to args.lines: the
        # ORM needs minutes for 10,000 lines and the wizard only reads them.
        move_date = run_date - datetime.timedelta(days=60)
        period = pool.get('account.period').find(company, date=move_date)
        lines, total = [], Decimal(0)
        for i in range(min(100, args.lines)):
            amount = Decimal(100 + i * 7)
            total += amount
            lines.append({
                    'account': receivable.id, 'debit': amount, 'credit': 0,
                    'party': parties[i % len(parties)].id,
                    'maturity_date': run_date - datetime.timedelta(
                        days=7 + i % 53)})
        lines.append({'account': revenue.id, 'debit': 0, 'credit': total})
        move, = Move.create([{'journal': journal.id, 'date': move_date,
                    'period': period, 'lines': [('create', lines)]}])
        Move.post([move])
        copy_move_lines(move, args.lines // 100 - 1, parties, run_date)
    _, result['setup_seconds'], _ = in_transaction(database, setup, context)

    def wizard():
        CreateDunning = pool.get('account.dunning.create', type='wizard')
        session_id, _, _ = CreateDunning.create()
        wizard = CreateDunning(session_id)
        wizard.start.date = run_date
        wizard.do_create_(None)
    _, result['seconds'], result['attempts'] = in_transaction(
        database, wizard, context)
    with Transaction().start(database, ADMIN, context=context):
        result['dunnings'] = pool.get('account.dunning').search_count([])
        result['python_optimize'] = sys.flags.optimize
    return result


PHASES = {'import': phase_import, 'run': phase_run,
    'fullrun': phase_fullrun,
    'profile': phase_profile, 'baseline': phase_baseline}


def main():
    if sys.argv[1:2] == ['admin']:
        # trytond-admin on the same source as the phases.
        from trytond.cli.admin import main as admin
        sys.argv = ['trytond-admin'] + sys.argv[2:]
        return admin()
    parser = argparse.ArgumentParser()
    parser.add_argument('phase', choices=sorted(PHASES))
    parser.add_argument('database')
    parser.add_argument('out')
    parser.add_argument('--date', default=datetime.date.today().isoformat())
    parser.add_argument('--items', type=int, default=100000)
    parser.add_argument('--debtors', type=int, default=1000)
    parser.add_argument('--administrations', type=int, default=3)
    parser.add_argument('--lines', type=int, default=10000)
    parser.add_argument('--explain', action='store_true')
    parser.add_argument('--importer', help="another importer.py to measure")
    args = parser.parse_args()
    result = PHASES[args.phase](args.database, args)
    from trytond.modules import payt_dunning
    result['source'] = os.path.dirname(payt_dunning.__file__)
    with open(args.out, 'w') as out:
        json.dump(result, out, indent=1, default=str)


if __name__ == '__main__':
    main()
