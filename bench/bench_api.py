"""REST API benchmark: POST /v1/invoices of --invoices invoices in batches
of --batch (the API's maximum, 1,000) against a real trytond, over HTTP
with a bearer token, as a partner package sends them; baseline in the same
run: the same batches through JSON-RPC import_batch (the path of the hub
and the web client's RPC) into a second administration of the same
database and server. Target: 100,000 invoices in < 60 s on PostgreSQL.

    .venv/bin/python bench/bench_api.py [--invoices 100000] [--batch 1000]
        [--backend postgresql|sqlite] [--write-doc]

The database is fresh (trytond-admin, as tests/test_server.py makes it);
each administration gets its 1,000 debtors first (not timed). Timed: every
request of the invoices, sequentially, response included.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PG_URI = 'postgresql://postgres@127.0.0.1:5432/'
TARGET = 60.0
DEBTORS = 1000
TODAY = datetime.date.today()


def log(message):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


def invoices(count, prefix):
    "Payt invoices (postV1Invoices) for debtors D0000..D0999."
    for i in range(count):
        amount = '%d.%02d' % (50 + i % 950, i % 100)
        yield {
            'invoice_number': '%s%07d' % (prefix, i),
            'debtor_number': 'D%04d' % (i % DEBTORS),
            'currency_code': 'EUR',
            'invoice_date': (TODAY - datetime.timedelta(40 + i % 60)
                ).isoformat(),
            'due_date': (TODAY - datetime.timedelta(10 + i % 60)
                ).isoformat(),
            'amount_total': amount, 'amount_open': amount,
            'book_amount_total': amount, 'book_amount_open': amount,
            'description': 'Invoice %d' % i,
            }


def batches(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def as_batch(invoice):
    "The same invoice as docs/IMPORT-BATCH.md's item (the RPC baseline)."
    return {'external_id': invoice['invoice_number'],
        'number': invoice['invoice_number'],
        'debtor': invoice['debtor_number'],
        'description': invoice['description'],
        'invoice_date': invoice['invoice_date'],
        'due_date': invoice['due_date'], 'currency': 'EUR',
        'amount': invoice['amount_total'],
        'open_amount': invoice['amount_open']}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--invoices', type=int, default=100000)
    parser.add_argument('--batch', type=int, default=1000)
    parser.add_argument('--backend', default='postgresql',
        choices=['postgresql', 'sqlite'])
    parser.add_argument('--write-doc', action='store_true',
        help='write docs/BENCHMARKS-API.md')
    args = parser.parse_args()
    if args.backend == 'postgresql':
        os.environ['TRYTOND_DATABASE__URI'] = PG_URI
    else:
        os.environ['TRYTOND_DATABASE__URI'] = 'sqlite://'
    os.environ.setdefault('PYTHONWARNINGS', 'ignore::DeprecationWarning')
    import httpx
    from trytond.modules.payt_dunning.tests import test_api, test_server

    load_start = os.getloadavg()
    log("creating the database (%s)" % args.backend)
    database = test_server.Database()
    server = None
    try:
        setup = json.loads(database.python(test_api.SETUP + '''
admin, = User.search([('login', '=', 'admin')])
companies = [Administration(int(result[n]['administration'])).company.id
    for n in 'AB']
User.write([admin], {'companies': [('add', companies)],
    'company': companies[1]})
result['B']['company'] = companies[1]
print(json.dumps(result))
''').strip().splitlines()[-1])
        port = test_server.free_port()
        server = subprocess.Popen([os.path.join(test_server.BIN, 'trytond'),
                '-d', database.name],
            env=dict(database.env, TRYTOND_WEB__LISTEN='127.0.0.1:%s' % port),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = 'http://127.0.0.1:%s/%s' % (port, database.name)
        client = httpx.Client(timeout=600)
        for _ in range(300):
            try:
                client.get(base + '/api/v1/openapi.json')
                break
            except httpx.TransportError:
                time.sleep(0.2)
        api = timed_api(client, base, setup['A'], args)
        rpc = timed_rpc(client, base, setup['B'], args)
    finally:
        if server:
            server.terminate()
            server.wait(30)
        database.drop()
    load_end = os.getloadavg()
    report = render(args, api, rpc, load_start, load_end)
    print(report)
    if args.write_doc:
        with open(os.path.join(ROOT, 'docs', 'BENCHMARKS-API.md'), 'w') as f:
            f.write(report)


def timed_api(client, base, setup, args):
    "Seconds per POST /v1/invoices batch, after the debtors."
    headers = {'Authorization': 'Bearer ' + setup['tokens']['all']}
    administration = setup['administration']
    response = client.post(base + '/api/v1/debtors', headers=headers, json={
            'administration_id': administration,
            'debtors': [{'debtor_number': 'D%04d' % i,
                    'name': 'Debtor %d' % i, 'language_code': 'nl'}
                for i in range(DEBTORS)]})
    assert response.json()['count'] == DEBTORS, response.text
    log("API: %s invoices in batches of %s" % (args.invoices, args.batch))
    seconds, count = [], 0
    for batch in batches(invoices(args.invoices, 'A'), args.batch):
        start = time.perf_counter()
        response = client.post(base + '/api/v1/invoices', headers=headers,
            json={'administration_id': administration, 'invoices': batch})
        seconds.append(time.perf_counter() - start)
        body = response.json()
        assert response.status_code == 201 and not body['errors'], (
            response.text[:500])
        count += body['count']
    assert count == args.invoices, count
    return seconds


def timed_rpc(client, base, setup, args):
    "Seconds per JSON-RPC import_batch of the same batches (baseline)."
    from trytond.modules.payt_dunning.tests.test_server import PASSWORD

    def rpc(method, params, session=None):
        headers = {}
        if session:
            headers['Authorization'] = 'Session ' + base64.b64encode(
                ('admin:%s:%s' % session).encode()).decode()
        response = client.post(base + '/rpc/', headers=headers, json={
                'id': 1, 'method': method, 'params': params})
        body = response.json()
        assert 'error' not in body, str(body)[:500]
        return body['result']
    session = tuple(rpc('common.db.login',
            ['admin', {'password': PASSWORD}, 'en'])[:2])
    context = rpc('model.res.user.get_preferences', [True, {}], session)
    administration = int(setup['administration'])
    rpc('model.payt.administration.import_batch', [administration,
            {'debtors': [{'external_id': 'D%04d' % i,
                        'name': 'Debtor %d' % i, 'language': 'nl'}
                    for i in range(DEBTORS)]}, context], session)
    log("RPC: %s invoices in batches of %s" % (args.invoices, args.batch))
    seconds = []
    for batch in batches(invoices(args.invoices, 'B'), args.batch):
        start = time.perf_counter()
        rpc('model.payt.administration.import_batch', [administration,
                {'items': [as_batch(i) for i in batch]}, context], session)
        seconds.append(time.perf_counter() - start)
    return seconds


def render(args, api, rpc, load_start, load_end):
    import trytond
    total_api, total_rpc = sum(api), sum(rpc)
    verdict = 'met' if total_api < TARGET else 'NOT met'
    if args.backend != 'postgresql':
        verdict = 'applies to PostgreSQL only'
    command = ('.venv/bin/python bench/bench_api.py --invoices %s --batch %s '
        '--backend %s --write-doc' % (args.invoices, args.batch,
            args.backend))
    rows = [
        ('invoices', args.invoices, args.invoices),
        ('requests', len(api), len(rpc)),
        ('total, s', '%.1f' % total_api, '%.1f' % total_rpc),
        ('per request, median s', '%.3f' % statistics.median(api),
            '%.3f' % statistics.median(rpc)),
        ('per request, max s', '%.3f' % max(api), '%.3f' % max(rpc)),
        ('invoices/s', '%.0f' % (args.invoices / total_api),
            '%.0f' % (args.invoices / total_rpc)),
        ]
    table = '\n'.join('%-24s %-14s %s' % row for row in
        [('', 'POST /v1/invoices', 'RPC import_batch')] + rows)
    return '''# Benchmark: the REST API's bulk invoice upsert

Generated by `bench/bench_api.py` on %s. Do not edit by hand: rerun it.

## Command

```
%s
```

## Machine

- %s cores; %s; Python %s, trytond %s; backend %s
- load average (1, 5, 15 min) at start: %s, at the end: %s. The machine
  is shared with other engineers' tests: a load above the number of cores
  inflates every figure

## Results

`POST /v1/invoices` of %s new invoices of 1,000 debtors in batches of %s,
sequentially over HTTP (bearer token, JSON), against the baseline in the
same run: the same invoices through JSON-RPC
`payt.administration.import_batch` (the hub's path) into a second
administration of the same server and database.

```
%s
```

Ratio API / RPC: %.2f. Target (PostgreSQL): 100,000 invoices in < 60 s: %s.

The API validates each record alone with the importer's `Validator` (so one
bad record is reported under its number and the others are imported), then
hands the valid ones to `import_batch` in one call: the difference to the
baseline is that validation, the mapping of Payt's fields and the JSON of
the per-record result.
''' % (time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), command,
        os.cpu_count(), platform.platform(), platform.python_version(),
        trytond.__version__, args.backend,
        ', '.join('%.2f' % l for l in load_start),
        ', '.join('%.2f' % l for l in load_end),
        '{:,}'.format(args.invoices), '{:,}'.format(args.batch), table,
        total_api / total_rpc, verdict)


if __name__ == '__main__':
    main()
