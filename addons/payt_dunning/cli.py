# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The `payt` command: the daily run, demo data and the legal calculators.

    payt run --database DB [--date YYYY-MM-DD] [--dry-run] [--json]
    payt import --database DB --administration NAME batch.json
    payt demo --database DB
    payt mailcatcher [--port 8025] [--dir var/mail]
    payt costs --principal 1234.56 [--consumer|--business]
        [--vat-surcharge 21 --vat-conditions-met] [--json]
    payt interest --principal X --from DATE --to DATE --kind consumer
        [--payment DATE:AMOUNT ...] [--provisional] [--json]
"""
import argparse
import datetime
import json
import os
import sys
import time


def _date(value):
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "%r is not a date: use YYYY-MM-DD" % value)


def _payment(value):
    "DATE:AMOUNT of `payt interest --payment`."
    day, sep, amount = value.partition(':')
    if not sep or not amount.strip():
        raise argparse.ArgumentTypeError(
            "%r is not a payment: use YYYY-MM-DD:AMOUNT" % value)
    return _date(day.strip()), amount.strip()


def _progress(message):
    "Progress on the terminal; silent when piped."
    if sys.stderr.isatty():
        print(message, file=sys.stderr, flush=True)


def parser():
    root = argparse.ArgumentParser(prog='payt',
        description="Automated debtor management for Tryton.")
    root.add_argument('-c', '--config', dest='config',
        default=os.environ.get('TRYTOND_CONFIG'),
        help="trytond configuration file")
    commands = root.add_subparsers(dest='command', required=True)

    run = commands.add_parser('run', help="the daily dunning run")
    run.add_argument('--database', '-d', required=True)
    run.add_argument('--date', type=_date,
        help="run as of this date (default: today)")
    run.add_argument('--administration', action='append',
        help="only this administration (name or id); repeatable")
    run.add_argument('--dry-run', action='store_true',
        help="show what would happen and change nothing")
    run.add_argument('--no-send', action='store_true',
        help="create communications but do not deliver them")
    run.add_argument('--json', action='store_true',
        help="print the summary as JSON")

    imp = commands.add_parser('import',
        help="import a JSON batch (docs/IMPORT-BATCH.md)")
    imp.add_argument('--database', '-d', required=True)
    imp.add_argument('--administration', required=True)
    imp.add_argument('file', type=argparse.FileType('rb'))

    demo = commands.add_parser('demo', help="create the demo data")
    demo.add_argument('--database', '-d', required=True)
    demo.add_argument('--seed', type=int, default=2026)

    catcher = commands.add_parser('mailcatcher',
        help="a local SMTP server that keeps every email as a file")
    catcher.add_argument('--port', type=int, default=8025)
    catcher.add_argument('--dir', default='var/mail')

    costs = commands.add_parser('costs',
        help="statutory collection costs (BIK staffel)")
    costs.add_argument('--principal', required=True)
    kind = costs.add_mutually_exclusive_group()
    kind.add_argument('--consumer', dest='kind', action='store_const',
        const='consumer')
    kind.add_argument('--business', dest='kind', action='store_const',
        const='business')
    costs.add_argument('--vat-surcharge', dest='vat', default=None,
        help="VAT rate in percent, when the three conditions hold")
    costs.add_argument('--vat-conditions-met', dest='vat_conditions',
        action='store_true',
        help="confirm all three conditions of Besluit BIK art. 2 lid 3: "
        "a VAT-charging third party is used, the creditor cannot deduct "
        "that VAT, and this is stated explicitly")
    costs.add_argument('--json', action='store_true')

    interest = commands.add_parser('interest', help="statutory interest",
        description="Statutory interest (art. 6:119/6:119a BW) from the "
        "first day of default up to the day of payment, with yearly "
        "capitalisation from the start of default.")
    interest.add_argument('--principal', required=True)
    interest.add_argument('--from', dest='start', type=_date, required=True,
        help="first day of default (counted): the day after the due date")
    interest.add_argument('--to', dest='end', type=_date, required=True,
        help="the day of payment (or of the calculation); this day is "
        "not counted: interest runs up to the day before")
    interest.add_argument('--kind', choices=['consumer', 'commercial'],
        required=True)
    interest.add_argument('--payment', dest='payments', action='append',
        type=_payment, default=[], metavar='DATE:AMOUNT',
        help="a payment on the claim (after costs), allocated to interest "
        "then principal (art. 6:44 BW); repeatable")
    interest.add_argument('--provisional', action='store_true',
        help="allow a --to beyond the last published rate by carrying it "
        "forward; the result is marked provisional")
    interest.add_argument('--json', action='store_true')
    return root


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exception:
        from trytond.exceptions import UserError
        if isinstance(exception, (UserError, ValueError)):
            message = getattr(exception, 'message', None) or str(exception)
            print("payt: %s" % message, file=sys.stderr)
            return 2
        raise


def _pool(args):
    from trytond.config import config
    if args.config:
        config.update_etc(args.config)
    from trytond.pool import Pool
    Pool.start()
    pool = Pool(args.database)
    pool.init()
    return pool


def _transaction(database, readonly=False, **extras):
    from trytond.transaction import Transaction
    return Transaction().start(database, 0, readonly=readonly,
        context={'_skip_warnings': True}, **extras)


def _retrying(database, work, attempts=10):
    """Run work(transaction) in a transaction, as Tryton's own dispatcher
    does: again with the locks it asked for (taken at the start, before
    PostgreSQL's snapshot), and again on a serialization conflict."""
    from trytond import backend
    from trytond.transaction import TransactionError
    extras = {}
    for attempt in range(attempts):
        try:
            with _transaction(database, **extras) as transaction:
                try:
                    return work(transaction)
                except TransactionError as error:
                    transaction.rollback()
                    error.fix(extras)
        except backend.DatabaseOperationalError:
            # Another run holds the administration (PostgreSQL) or the
            # database file (SQLite): wait for it, up to about a minute.
            if attempt == attempts - 1:
                raise
            time.sleep(min(0.25 * 2 ** attempt, 15))
    raise RuntimeError("no transaction could be completed")


def cmd_run(args):
    pool = _pool(args)
    from .run import format_summaries
    date = args.date
    with _transaction(args.database, readonly=True):
        Administration = pool.get('payt.administration')
        date = date or pool.get('ir.date').today()
        if args.administration:
            ids = [Administration.by_name(n).id for n in args.administration]
        else:
            ids = [a.id for a in Administration.search([])]
    summaries = []
    for number, administration_id in enumerate(ids, 1):
        def work(transaction):
            Administration = pool.get('payt.administration')
            administration = Administration(administration_id)
            _progress("[%d/%d] %s: running for %s%s" % (number, len(ids),
                    administration.rec_name, date,
                    " (dry run)" if args.dry_run else ""))
            # --no-send: case letters wait for the next send, as emails do.
            with transaction.set_context(payt_hold_delivery=args.no_send):
                summary = pool.get('payt.run').execute(
                    administration, date, dry_run=args.dry_run)
            if args.dry_run:
                transaction.rollback()
            return summary
        started = time.perf_counter()
        summary = _retrying(args.database, work)
        summary['seconds'] = round(time.perf_counter() - started, 3)
        summaries.append(summary)
    down = []
    if not args.dry_run and not args.no_send:
        for administration_id in ids:
            sent = _send(pool, args.database, administration_id)
            for summary in summaries:
                if summary['administration_id'] == administration_id:
                    summary['emails_sent'] = sent
        down = _providers_down(pool, args.database)
    if args.json:
        print(json.dumps({'date': date.isoformat(),
                    'dry_run': args.dry_run,
                    'administrations': summaries}, indent=2))
    else:
        print(format_summaries(summaries))
        for summary in summaries:
            if 'emails_sent' in summary:
                print("  %s: %s email(s) sent" % (
                        summary['administration'], summary['emails_sent']))
    if down:
        _report_undelivered(down)
        return 3


def _send(pool, database, administration_id=None):
    """Deliver pending messages; each is recorded as sent once its provider
    accepted it. Return how many went."""
    def send(transaction):
        Administration = pool.get('payt.administration')
        return pool.get('payt.communication').send_pending(
            Administration(administration_id) if administration_id else None)
    return _retrying(database, send)


def _providers_down(pool, database):
    "(provider, last error) of each provider the sender waits for."
    def read(transaction):
        Backoff = pool.get('payt.channel.backoff')
        waiting = Backoff.waiting()
        return [(b.provider, b.error) for b in Backoff.search([
                    ('provider', 'in', list(waiting))])]
    return _retrying(database, read)


def _report_undelivered(down):
    from trytond import config
    for provider, error in down:
        where = ("the mail server %s; check the [email] uri setting" % (
                config.get('email', 'uri')) if provider == 'smtp'
            else "%s; check its settings in [payt_channels]" % provider)
        print("payt: could not hand messages to %s (%s). They stay pending "
            "and go out with a later send." % (where, error),
            file=sys.stderr)


def cmd_import(args):
    pool = _pool(args)
    try:
        batch = json.load(args.file)
    except ValueError as exception:
        raise ValueError("%s is not valid JSON: %s" % (
                args.file.name, exception))

    def work(transaction):
        Administration = pool.get('payt.administration')
        administration = Administration.by_name(args.administration)
        return Administration.import_batch(administration.id, batch)
    print(json.dumps(_retrying(args.database, work), indent=2))


def cmd_demo(args):
    pool = _pool(args)
    from .demo import build_demo
    with _transaction(args.database) as transaction:
        build_demo(pool, seed=args.seed, progress=print)
        transaction.commit()
    print("%s reminder messages delivered" % _send(pool, args.database))
    down = _providers_down(pool, args.database)
    if down:
        _report_undelivered(down)


def cmd_mailcatcher(args):
    "Keep every email the demo sends as an .eml file, for reading."
    import email
    import email.policy
    import pathlib
    from aiosmtpd.controller import Controller
    folder = pathlib.Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)

    class Keep:
        count = 0

        async def handle_DATA(self, server, session, envelope):
            Keep.count += 1
            message = email.message_from_bytes(
                envelope.content, policy=email.policy.default)
            path = folder / ('%s-%05d.eml' % (
                    time.strftime('%Y%m%d-%H%M%S'), Keep.count))
            path.write_bytes(envelope.content)
            print("mail to %s: %s" % (', '.join(envelope.rcpt_tos),
                    message['Subject']), flush=True)
            return '250 OK'
    controller = Controller(Keep(), hostname='127.0.0.1', port=args.port)
    controller.start()
    print("Mail catcher on smtp://127.0.0.1:%s, keeping mail in %s" % (
            args.port, folder), flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def cmd_costs(args):
    from . import law
    print(law.costs_report(args.principal, args.kind or 'consumer',
            args.vat, args.json, vat_conditions=args.vat_conditions))


def cmd_interest(args):
    from . import law
    print(law.interest_report(args.principal, args.start, args.end,
            args.kind, args.json, payments=args.payments,
            provisional=args.provisional))


COMMANDS = {
    'run': cmd_run,
    'import': cmd_import,
    'demo': cmd_demo,
    'mailcatcher': cmd_mailcatcher,
    'costs': cmd_costs,
    'interest': cmd_interest,
    }

if __name__ == '__main__':
    sys.exit(main())
