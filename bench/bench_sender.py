"""Sender benchmark: the outbox's emails rendered and handed to a local
SMTP catcher by the sender (`channel.run_sender`, the `payt-sender`
process), with one worker and with two side by side (PostgreSQL: they
share the rows with FOR UPDATE SKIP LOCKED); baseline in the same run: the
same number of ready-made messages of the same size sent over one SMTP
connection by Tryton's own `send_message` (the floor of the catcher and
the SMTP conversation). Target: >= 200 emails per second per worker.

    .venv/bin/python bench/bench_sender.py [--emails 2000]
        [--backend postgresql|sqlite] [--batch-size 100] [--profile]
        [--write-doc]

The database is fresh (as tests/test_server.py makes it); one debtor per
email, each with one invoice due for the first reminder, so each email is
one bundle. Not timed: the import and the run (`payt run --no-send`).
Timed: from the start of the sender(s) until every email is recorded as
sent, process start included.
"""
import argparse
import datetime
import email
import email.policy
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PG_URI = 'postgresql://postgres@127.0.0.1:5432/'
TARGET = 200.0
SENDER = ('import sys; from trytond.modules.payt_dunning.channel '
    'import main; sys.exit(main())')
PROFILED = ('import cProfile, pstats, sys; '
    'from trytond.modules.payt_dunning.channel import main; '
    'cProfile.run("main()", sys.argv.pop(1))')
RESET = '''
Communication = pool.get('payt.communication')
Communication.write(Communication.search([]), {'state': 'pending',
        'attempt_at': None, 'attempts': 0, 'sent_at': None,
        'status_at': None, 'provider': None, 'provider_id': None})
'''
COUNT_SENT = '''
Communication = pool.get('payt.communication')
print(Communication.search([('state', '=', 'sent')], count=True))
'''


def log(message):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


class Catcher:
    "An aiosmtpd handler that counts what it accepts and keeps one copy."

    def __init__(self):
        self.count = 0
        self.sample = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            if self.sample is None:
                self.sample = envelope.content
        return '250 OK'


def batch(count):
    due = (datetime.date.today() - datetime.timedelta(days=8)).isoformat()
    return {
        'debtors': [{'external_id': 'D%05d' % i, 'name': 'Debtor %d' % i,
                'email': 'd%d@example.com' % i} for i in range(count)],
        'items': [{'external_id': 'I%05d' % i, 'debtor': 'D%05d' % i,
                'number': 'F-%05d' % i, 'amount': '%d.50' % (100 + i % 900),
                'open_amount': '%d.50' % (100 + i % 900), 'due_date': due}
            for i in range(count)]}


def prepare(database, emails):
    from trytond.modules.payt_dunning.tests.test_server import (
        ADMINISTRATION, SETUP)
    database.python(SETUP)
    database.python(ADMINISTRATION % "Sender Bench BV")
    path = os.path.join(database.folder, 'batch.json')
    with open(path, 'w') as f:
        json.dump(batch(emails), f)
    database.payt('import', '-d', database.name, '--administration',
        'Sender Bench BV', path)
    database.payt('run', '-d', database.name, '--no-send')


def timed_senders(database, env, workers, batch_size, emails, profile=None):
    "Seconds until `emails` are recorded as sent by `workers` senders."
    database.python(RESET)
    code = [PROFILED, profile] if profile else [SENDER]
    start = time.perf_counter()
    senders = [subprocess.Popen([sys.executable, '-c'] + code + [
                '-d', database.name, '--batch-size', str(batch_size)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True) for _ in range(workers)]
    for sender in senders:
        _, err = sender.communicate()
        assert sender.returncode == 0, err[-2000:]
    seconds = time.perf_counter() - start
    sent = int(database.python(COUNT_SENT).strip().splitlines()[-1])
    assert sent == emails, (sent, emails)
    return seconds


def timed_raw_smtp(uri, sample, emails):
    "Seconds to send `emails` copies of one message over one connection."
    from trytond import config
    from trytond.sendmail import get_smtp_server, send_message
    config.set('email', 'uri', uri)
    server = get_smtp_server(strict=True)
    start = time.perf_counter()
    for i in range(emails):
        msg = email.message_from_bytes(sample, policy=email.policy.SMTP)
        del msg['Message-ID']
        msg['Message-ID'] = '<raw-%d@bench.example>' % i
        server = send_message(msg, server=server, strict=True) or server
    server.quit()
    return time.perf_counter() - start


def top_of_profile(path, lines=18):
    import io
    import pstats
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats('cumulative').print_stats(lines)
    return '\n'.join(l for l in out.getvalue().splitlines()
        if l.strip() and not l.startswith('   Ordered'))[-4000:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--emails', type=int, default=2000)
    parser.add_argument('--batch-size', type=int, default=100)
    parser.add_argument('--backend', default='postgresql',
        choices=['postgresql', 'sqlite'])
    parser.add_argument('--profile', action='store_true',
        help='also profile one worker (cProfile) and show the top')
    parser.add_argument('--profile-out', metavar='FILE',
        help='keep the profile (pstats) in FILE')
    parser.add_argument('--write-doc', action='store_true',
        help='write docs/BENCHMARKS-SENDER.md')
    args = parser.parse_args()
    os.environ['TRYTOND_DATABASE__URI'] = (PG_URI
        if args.backend == 'postgresql' else 'sqlite://')
    os.environ.setdefault('PYTHONWARNINGS', 'ignore::DeprecationWarning')
    from aiosmtpd.controller import Controller
    from trytond.modules.payt_dunning.tests.test_server import (
        Database, free_port)

    load_start = os.getloadavg()
    catcher = Catcher()
    smtp = Controller(catcher, hostname='127.0.0.1', port=free_port())
    smtp.start()
    uri = 'smtp://127.0.0.1:%s' % smtp.port
    log("creating the database (%s) with %d emails to send" % (
            args.backend, args.emails))
    database = Database()
    results, profile = {}, None
    try:
        prepare(database, args.emails)
        env = dict(database.env, TRYTOND_EMAIL__URI=uri,
            TRYTOND_DATABASE__RETRY='20')
        worker_counts = [1, 2] if args.backend == 'postgresql' else [1]
        for workers in worker_counts:
            log("sender: %d worker(s)" % workers)
            results[workers] = timed_senders(database, env, workers,
                args.batch_size, args.emails)
        log("baseline: raw SMTP")
        results['raw'] = timed_raw_smtp(uri, catcher.sample, args.emails)
        if args.profile:
            log("profiling one worker")
            path = os.path.join(database.folder, 'sender.prof')
            timed_senders(database, env, 1, args.batch_size, args.emails,
                profile=path)
            profile = top_of_profile(path)
            if args.profile_out:
                shutil.copy(path, args.profile_out)
    finally:
        database.drop()
        smtp.stop()
    report = render(args, results, len(catcher.sample), profile,
        load_start, os.getloadavg())
    print(report)
    if args.write_doc:
        with open(os.path.join(ROOT, 'docs', 'BENCHMARKS-SENDER.md'),
                'w') as f:
            f.write(report)


def render(args, results, size, profile, load_start, load_end):
    import psycopg
    import trytond
    rate = lambda seconds: args.emails / seconds
    one = rate(results[1])
    verdict = 'met' if one >= TARGET else 'NOT met'
    rows = [('sender, 1 worker', results[1])]
    if 2 in results:
        rows.append(('sender, 2 workers', results[2]))
    rows.append(('baseline: raw SMTP, 1 connection', results['raw']))
    table = '\n'.join('%-34s %8.1f s %8.0f emails/s' % (name, s, rate(s))
        for name, s in rows)
    command = ('.venv/bin/python bench/bench_sender.py --emails %d '
        '--batch-size %d --backend %s%s --write-doc' % (args.emails,
            args.batch_size, args.backend,
            ' --profile' if args.profile else ''))
    parts = ['''# Benchmark: the sender (outbox to SMTP)

Generated by `bench/bench_sender.py` on %s UTC. Do not edit by hand: rerun
it.

## Command

```
%s
```

## Machine

- %d cores; %s; Python %s, trytond %s; backend %s (psycopg %s, %s
  implementation)
- load average (1, 5, 15 min) at start: %s, at the end: %s. The machine is
  shared with other engineers' tests: a load above the number of cores
  inflates every figure

## Results

%d emails (one debtor and one invoice each, the first reminder with the
debtor's portal link and the payment data, %d bytes as the catcher received
it), rendered and handed over by `payt-sender` (batches of %d, each email
recorded as sent after the catcher accepted it), against the same number of
ready-made messages sent over one connection by Tryton's `send_message`:

```
%s
```

Ratio sender (1 worker) / raw SMTP: %.1f. Target (>= %d emails/s per
worker): %s.
''' % (time.strftime('%Y-%m-%d %H:%M', time.gmtime()), command,
            os.cpu_count(), platform.platform(), platform.python_version(),
            trytond.__version__, args.backend, psycopg.__version__,
            psycopg.pq.__impl__,
            ', '.join('%.2f' % l for l in load_start),
            ', '.join('%.2f' % l for l in load_end),
            args.emails, size, args.batch_size, table,
            results[1] / results['raw'], TARGET, verdict)]
    if profile:
        parts.append('''## Where the time goes (one worker, cProfile, cumulative)

```
%s
```
''' % profile)
    return '\n'.join(parts)


if __name__ == '__main__':
    main()
