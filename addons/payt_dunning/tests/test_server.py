# This file is part of payt_dunning. See COPYRIGHT and LICENSE files.
"""The module in a real Tryton server and the `payt` command in real
processes, on a database of its own (SQLite file or PostgreSQL).

Covers what only separate processes can show: login over JSON-RPC (trytond
8.0.12 refused every login without -d), the bulk entry point over RPC, and a
daily run killed half-way or overlapping another one."""
import atexit
import datetime
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from trytond import backend

BIN = os.path.dirname(sys.executable)
PASSWORD = 'payt-test-2026'
TODAY = datetime.date.today()


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


class MailSink:
    "An SMTP server that accepts every mail (aiosmtpd handler)."

    async def handle_DATA(self, server, session, envelope):
        return '250 OK'


class Database:
    """A fresh database with the module activated, for other processes.

    The first one of a test process is activated with trytond-admin (about
    20 s) and kept as a template; the next ones are copies of it (a file
    copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL), or of a
    `snapshot` of a database prepared further (the demo)."""
    _activated = None

    def __init__(self, template=None):
        self.name = _new_name('payt_server')
        self.folder = tempfile.mkdtemp(prefix='payt-server-')
        self.env = dict(os.environ)
        self.env.pop('DB_NAME', None)
        # The SQLite file and, on both backends, the attachments' filestore.
        self.env['TRYTOND_DATABASE__PATH'] = self.folder
        if backend.name == 'sqlite':
            self.env['TRYTOND_DATABASE__URI'] = 'sqlite://'
        if template is None:
            if Database._activated is None:
                Database._activated = _Template.activated(self.env)
            template = Database._activated
        template.copy_to(self.name, self.folder)

    def snapshot(self):
        "A template of this database as it is now (no process may use it)."
        template = _Template(_new_name('payt_snapshot'))
        _copy_database(self.name, self.folder, template.name, template.folder)
        return template

    def run(self, args, extra=None, check=True, **kwargs):
        env = dict(self.env, **(extra or {}))
        result = subprocess.run(args, env=env, text=True,
            capture_output=True, timeout=600, **kwargs)
        if check and result.returncode:
            raise AssertionError("%s failed (%s):\n%s" % (
                    ' '.join(args)[:200], result.returncode,
                    result.stderr[-3000:]))
        return result

    def payt(self, *args, check=True):
        return self.run([os.path.join(BIN, 'payt')] + list(args),
            check=check)

    def popen_payt(self, *args):
        return subprocess.Popen([os.path.join(BIN, 'payt')] + list(args),
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)

    def python(self, code, lock_tables=()):
        """Run code in a fresh process with a transaction on the database;
        lock_tables: taken at the start, as trytond's dispatcher retries a
        call that needs them (a singleton's first write)."""
        script = (
            "import json\n"
            "from trytond.pool import Pool\n"
            "from trytond.transaction import Transaction\n"
            "Pool.start(); pool = Pool(%r); pool.init()\n"
            "with Transaction().start(%r, 0, _lock_tables=%r) as transaction:\n"
            "%s\n"
            "    transaction.commit()\n") % (self.name, self.name,
            list(lock_tables),
            '\n'.join('    ' + line for line in code.splitlines()))
        result = self.run([sys.executable, '-c', script])
        return result.stdout

    def drop(self):
        if backend.name == 'postgresql':
            _on_server(lambda db, connection: db.drop(connection, self.name))
        shutil.rmtree(self.folder, ignore_errors=True)


_numbers = itertools.count(1)


def _new_name(prefix):
    return '%s_%s_%s' % (prefix, os.getpid(), next(_numbers))


def _on_server(action):
    "Create or drop a PostgreSQL database, as trytond's tests do."
    database = backend.Database()
    database.connect()
    connection = database.get_connection(autocommit=True)
    try:
        return action(database, connection)
    finally:
        database.put_connection(connection)
        database.close()


def _sqlite_file(folder, name):
    return os.path.join(folder, name + '.sqlite')


def _copy_database(source, source_folder, name, folder):
    "Copy a database and its filestore (attachments) under a new name."
    filestore = os.path.join(source_folder, source)
    if os.path.isdir(filestore):
        shutil.copytree(filestore, os.path.join(folder, name))
    if backend.name == 'sqlite':
        shutil.copyfile(_sqlite_file(source_folder, source),
            _sqlite_file(folder, name))
        return

    def create(database, connection):
        connection.cursor().execute(
            'CREATE DATABASE "%s" TEMPLATE "%s"' % (name, source))
    _on_server(create)


class _Template:
    "A database kept for the test process, copied for each Database."

    def __init__(self, name):
        self.name = name
        self.folder = tempfile.mkdtemp(prefix='payt-template-')
        atexit.register(self.drop)

    @classmethod
    def activated(cls, env):
        "The module and its dependencies activated by trytond-admin."
        template = cls(_new_name('payt_template'))
        env = dict(env)
        if backend.name == 'sqlite':
            env['TRYTOND_DATABASE__PATH'] = template.folder
            open(_sqlite_file(template.folder, template.name), 'w').close()
        else:
            _on_server(lambda db, connection: db.create(
                    connection, template.name))
        passfile = os.path.join(template.folder, 'password')
        with open(passfile, 'w') as f:
            f.write(PASSWORD)
        result = subprocess.run([os.path.join(BIN, 'trytond-admin'),
                '-d', template.name, '--all', '-u', 'payt_dunning',
                '--activate-dependencies', '--email', 'admin@payt.example'],
            env=dict(env, TRYTONPASSFILE=passfile), text=True,
            capture_output=True, timeout=600)
        if result.returncode:
            raise AssertionError("trytond-admin failed:\n%s"
                % result.stderr[-3000:])
        return template

    def copy_to(self, name, folder):
        _copy_database(self.name, self.folder, name, folder)

    def drop(self):
        if backend.name == 'postgresql':
            _on_server(lambda db, connection: db.drop(connection, self.name))
        shutil.rmtree(self.folder, ignore_errors=True)


SETUP = '''
Currency = pool.get('currency.currency')
Currency.create([{'name': 'Euro', 'code': 'EUR', 'symbol': 'E',
    'rounding': 1, 'digits': 2}])
'''

ADMINISTRATION = '''
Party = pool.get('party.party'); Company = pool.get('company.company')
Currency = pool.get('currency.currency'); User = pool.get('res.user')
Administration = pool.get('payt.administration')
euro, = Currency.search([('code', '=', 'EUR')])
party, = Party.create([{'name': %r}])
company, = Company.create([{'party': party.id, 'currency': euro.id}])
admin, = User.search([('login', '=', 'admin')])
User.write([admin], {'companies': [('add', [company.id])],
    'company': company.id})
Administration.create([{'company': company.id}])
'''


def batch(count, seed=7):
    rng = random.Random(seed)
    debtors = [{'external_id': 'D%d' % i, 'name': 'Debtor %d' % i,
            'email': 'd%d@example.com' % i} for i in range(count // 20 + 1)]
    items = []
    for i in range(count):
        due = TODAY - datetime.timedelta(days=rng.randrange(-10, 60))
        items.append({'external_id': 'I%d' % i,
                'debtor': 'D%d' % (i // 20), 'due_date': due.isoformat(),
                'amount': '%d.00' % (10 + i % 500),
                'open_amount': '%d.00' % (10 + i % 500)})
    return {'debtors': debtors, 'items': items}


class ServerTestCase(unittest.TestCase):
    "A real server and real processes"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.database = Database()
        cls.database.python(SETUP)

    @classmethod
    def tearDownClass(cls):
        cls.database.drop()
        super().tearDownClass()

    def _rpc(self, port, method, params, session=None):
        request = urllib.request.Request(
            'http://127.0.0.1:%s/%s/rpc/' % (port, self.database.name),
            data=json.dumps({'id': 1, 'method': method,
                    'params': params}).encode(),
            headers={'Content-Type': 'application/json'})
        if session:
            import base64
            token = base64.b64encode(
                ('admin:%s:%s' % session).encode()).decode()
            request.add_header('Authorization', 'Session ' + token)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            return {'error': [error.code, error.read().decode()]}

    def _start_server(self):
        port = free_port()
        server = subprocess.Popen([os.path.join(BIN, 'trytond'),
                '-d', self.database.name],
            env=dict(self.database.env,
                TRYTOND_WEB__LISTEN='127.0.0.1:%s' % port),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.addCleanup(server.wait, 10)
        self.addCleanup(server.terminate)
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port), 1).close()
                return port
            except OSError:
                time.sleep(0.2)
        self.fail("trytond did not start: %s" % server.stderr.read())

    def test_login_and_import_over_json_rpc(self):
        "Log in to a running server, import a batch over RPC, read it back"
        self.database.python(ADMINISTRATION % "Login BV")
        port = self._start_server()
        refused = self._rpc(port, 'common.db.login',
            ['admin', {'password': 'wrong'}, 'en'])
        self.assertIn('error', refused)
        login = self._rpc(port, 'common.db.login',
            ['admin', {'password': PASSWORD}, 'en'])
        self.assertNotIn('error', login, login)
        user_id, key = login['result'][:2]
        session = (user_id, key)
        context = self._rpc(port, 'model.res.user.get_preferences',
            [True, {}], session)['result']
        administrations = self._rpc(port,
            'model.payt.administration.search',
            [[('name', '=', "Login BV")], 0, None, None, context],
            session)['result']
        self.assertEqual(len(administrations), 1)
        summary = self._rpc(port, 'model.payt.administration.import_batch',
            [administrations[0], batch(40), context], session)
        self.assertNotIn('error', summary, summary)
        self.assertEqual(summary['result']['items_created'], 40)
        bad = batch(2)
        bad['items'][1]['amount'] = 1.5
        refused = self._rpc(port, 'model.payt.administration.import_batch',
            [administrations[0], bad, context], session)
        kind, (message, *_) = refused['error']
        self.assertEqual(kind, 'UserError')
        self.assertIn('item "I1", field "amount"', message)
        found = self._rpc(port, 'model.payt.item.search_count',
            [[('administration', '=', administrations[0])], 0, None,
                context], session)['result']
        self.assertEqual(found, 40)

    def _administration(self, name, count):
        "A new administration of its own with `count` items, none dunned."
        self.database.python(ADMINISTRATION % name)
        path = os.path.join(self.database.folder, 'batch.json')
        with open(path, 'w') as f:
            json.dump(batch(count), f)
        self.database.payt('import', '-d', self.database.name,
            '--administration', name, path)
        return name

    def _run(self, name, *args):
        return self.database.popen_payt('run', '-d', self.database.name,
            '--administration', name, '--no-send', '--json', *args)

    def _communications(self, out):
        return json.loads(out)['administrations'][0]['communications']

    def _stored(self, name):
        out = self.database.python(
            "Communication = pool.get('payt.communication')\n"
            "Event = pool.get('payt.event')\n"
            "where = [('item.administration.name', '=', %r)]\n"
            "print(json.dumps(sorted((c.item.external_id,"
            " c.step.lead_days, c.channel)"
            " for c in Communication.search(where))))\n"
            "print(json.dumps(sorted((e.item.external_id,"
            " e.step.lead_days, e.kind) for e in Event.search(where"
            " + [('step', '!=', None)]))))" % name)
        communications, events = out.strip().splitlines()[-2:]
        return json.loads(communications), json.loads(events)

    def _expected(self, name):
        "How many communications a run would create, and its duration."
        start = time.monotonic()
        out, _ = self._run(name, '--dry-run').communicate(timeout=600)
        return self._communications(out), time.monotonic() - start

    def test_killed_run_then_rerun_sends_nothing_twice(self):
        "Kill the run at random moments; the rerun completes it exactly once"
        name = self._administration("Killed Run BV", 2000)
        expected, duration = self._expected(name)
        self.assertGreater(expected, 300)
        rng = random.Random(11)
        killed = 0
        for attempt in range(3):
            process = self._run(name)
            # Somewhere inside the run, whatever the speed of the machine
            # (a dry run takes as long as the real one).
            time.sleep(rng.uniform(0.3, 0.95) * duration)
            process.send_signal(signal.SIGKILL)
            killed += process.wait() == -signal.SIGKILL
        self.assertGreater(killed, 0, "no run was still busy when killed")
        out, _ = self._run(name).communicate(timeout=600)
        communications, events = self._stored(name)
        self.assertEqual(len(communications), expected)
        self.assertEqual(len(set(map(tuple, communications))),
            len(communications))
        self.assertEqual(len(set(map(tuple, events))), len(events))
        self.assertLessEqual(self._communications(out), expected)
        # A last run for the same date finds nothing left to do.
        out, _ = self._run(name).communicate(timeout=600)
        self.assertEqual(self._communications(out), 0)

    def test_overlapping_runs_create_each_communication_once(self):
        "Two runs started together do the work once between them"
        name = self._administration("Overlap BV", 1500)
        expected, _ = self._expected(name)
        first, second = self._run(name), self._run(name)
        outputs = [p.communicate(timeout=600) for p in (first, second)]
        self.assertEqual([first.returncode, second.returncode], [0, 0],
            outputs)
        created = [self._communications(out) for out, _ in outputs]
        self.assertEqual(sorted(created), [0, expected])
        communications, _ = self._stored(name)
        self.assertEqual(len(communications), expected)

    def test_cli_reports_bad_input_clearly(self):
        "Errors say what to do next, without a traceback"
        result = self.database.payt('run', '-d', self.database.name,
            '--administration', 'Nope BV', check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn('No administration named or numbered "Nope BV"',
            result.stderr)
        self.assertIn('known:', result.stderr)
        self.assertNotIn('Traceback', result.stderr)
        result = self.database.payt('run', '-d', self.database.name,
            '--date', '23-11-2026', check=False)
        self.assertEqual(result.returncode, 2)
        self.assertIn('use YYYY-MM-DD', result.stderr)
