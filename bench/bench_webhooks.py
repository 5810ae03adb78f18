"""Webhook benchmark: deliveries per second to a local receiver.

    DB_NAME=:memory: DB_CACHE=$PWD/var/db-cache \\
        .venv/bin/python bench/bench_webhooks.py [--invoices 5000]
    (PostgreSQL: TRYTOND_DATABASE__URI=postgresql://postgres@127.0.0.1:5432/
     DB_NAME=bench_webhooks)

In the test framework's database: one administration with one subscription
to all events; an import of --invoices new invoices emits as many
`invoice_created` deliveries (timed: the import with and without a
listener, the difference being the emission); then the outbox is sent in
batches of --batch through `send_pending` (claim, build the POSTs, sign,
POST over keep-alive HTTP to a ThreadingHTTPServer on loopback that checks
each signature, record) and timed until empty.
"""
import argparse
import datetime
import hashlib
import hmac
import http.server
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'addons'))


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    secret = b''
    verified = 0

    def do_POST(self):
        raw = self.rfile.read(int(self.headers['Content-Length']))
        expected = hmac.new(Receiver.secret, raw, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected,
            self.headers.get('X-PAYT-SIGNATURE', ''))
        Receiver.verified += ok
        self.send_response(200 if ok else 401)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


def batch(prefix, count, today):
    due = (today - datetime.timedelta(days=10)).isoformat()
    return {
        'debtors': [{'external_id': 'D%d' % i, 'name': 'Debtor %d' % i,
                'language': 'nl'} for i in range(100)],
        'items': [{'external_id': '%s%d' % (prefix, i),
                'debtor': 'D%d' % (i % 100), 'number': '%s%d' % (prefix, i),
                'due_date': due, 'currency': 'EUR', 'amount': '100.00',
                'open_amount': '100.00'} for i in range(count)]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--invoices', type=int, default=5000)
    parser.add_argument('--batch', type=int, default=100)
    args = parser.parse_args()

    from trytond.tests.test_tryton import activate_module, with_transaction
    from trytond.pool import Pool
    from trytond import backend
    activate_module('payt_dunning')

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = 'http://127.0.0.1:%s/hook' % server.server_address[1]

    @with_transaction()
    def bench():
        from trytond.modules.payt_dunning.tests.tools import (
            create_administration)
        pool = Pool()
        Administration = pool.get('payt.administration')
        Webhook = pool.get('payt.webhook')
        Delivery = pool.get('payt.webhook.delivery')
        today = pool.get('ir.date').today()
        quiet = create_administration("Without listener BV")
        start = time.perf_counter()
        Administration.import_batch(quiet.id,
            batch('Q', args.invoices, today))
        without = time.perf_counter() - start

        administration = create_administration("Listened BV")
        webhook, = Webhook.create([{'administration': administration.id,
                    'url': url}])
        Receiver.secret = Webhook.set_secrets([webhook])[webhook.id].encode()
        start = time.perf_counter()
        Administration.import_batch(administration.id,
            batch('L', args.invoices, today))
        emitting = time.perf_counter() - start
        pending = Delivery.search_count([('state', '=', 'pending')])

        start = time.perf_counter()
        sent = 0
        while True:
            count = Delivery.send_pending(limit=args.batch)
            if not count:
                break
            sent += count
        sending = time.perf_counter() - start
        print("backend %s, %d invoices" % (backend.name, args.invoices))
        print("import without a listener   %.2f s" % without)
        print("import emitting %d events  %.2f s (emission %+.2f s)" % (
                pending, emitting, emitting - without))
        print("delivered %d (receiver verified %d) in %.2f s: "
            "%.0f deliveries/s" % (sent, Receiver.verified, sending,
                sent / sending))
    bench()
    server.shutdown()


if __name__ == '__main__':
    main()
