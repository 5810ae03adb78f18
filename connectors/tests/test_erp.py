"""End to end: simulators on real loopback ports -> payt-hub (a separate
process, killed with SIGKILL at random points) -> a real Tryton database
(SQLite file made by trytond-admin) through ProteusSink."""
import json
import os
import random
import signal
import subprocess
import sys
from decimal import Decimal

import pytest

pytest.importorskip('proteus')
pytest.importorskip('trytond.modules.payt_dunning')

from payt_hub.simulators.imuis import ImuisSimulator  # noqa: E402
from payt_hub.simulators.snelstart import (  # noqa: E402
    PRIMARY_KEY, SECONDARY_KEY, SnelstartSimulator)

BIN = os.path.dirname(sys.executable)
DATABASE = 'hub'
PARTNER_KEY = 'partner-key-of-payt-Zq81xv'
ENVIRONMENT = 'ENV-7731-xq'
CLIENT_KEY = 'koppelsleutel-Snel-4471-ab'
SECRETS = (PARTNER_KEY, ENVIRONMENT, CLIENT_KEY, PRIMARY_KEY, SECONDARY_KEY)

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
admin = User(config.get_config().user)
for name in sys.argv[2:]:
    company = Company(party=Party(name=name), currency=euro)
    company.party.save()
    company.save()
    admin.companies.append(Company(company.id))
    admin.company = Company(company.id)
    admin.company_filter = 'all'  # the hub works for every company
    admin.save()
    config.get_config()._context = User.get_preferences(True, {})
    Administration(company=company).save()
'''


@pytest.fixture(scope='module')
def erp(tmp_path_factory):
    """A fresh SQLite Tryton database with payt_dunning and two
    administrations; the environment for processes that use it."""
    path = tmp_path_factory.mktemp('erp')
    (path / 'pass').write_text('admin-password\n')
    (path / f'{DATABASE}.sqlite').touch()
    env = dict(os.environ, TRYTOND_DATABASE__URI='sqlite://',
               TRYTOND_DATABASE__PATH=str(path),
               TRYTONPASSFILE=str(path / 'pass'),
               PAYT_HUB_PAGE_SIZE='25', PAYT_HUB_BATCH_RECORDS='60',
               PYTHONUNBUFFERED='1',
               K1=PARTNER_KEY, CODE=ENVIRONMENT)
    env.pop('DB_NAME', None)
    env.pop('TRYTOND_CONFIG', None)
    subprocess.run([os.path.join(BIN, 'trytond-admin'), '-d', DATABASE,
                    '--all', '-u', 'payt_dunning',
                    '--activate-dependencies', '--email',
                    'admin@example.com'], env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run([sys.executable, '-c', SETUP, DATABASE, 'Imuis BV',
                    'Snel BV'], env=env, check=True, timeout=120)
    return env


def hub(env, *args, input=None, timeout=300):
    return subprocess.run([sys.executable, '-m', 'payt_hub.cli', *args],
                          env=env, capture_output=True, text=True,
                          input=input, timeout=timeout)


def query(env, code):
    """Run proteus code against the ERP in a fresh process; it prints
    JSON."""
    script = ('import json, sys\nfrom proteus import Model, config\n'
              f'config.set_trytond({DATABASE!r})\n' + code)
    out = subprocess.run([sys.executable, '-c', script], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def erp_items(env, administration):
    """{external_id: [open_amount, state]} of every item, and the number of
    rows per external id (duplicates)."""
    return query(env, f'''
Item = Model.get('payt.item')
Debtor = Model.get('payt.debtor')
rows = Item.find([('administration.name', '=', {administration!r})])
items = {{}}
for i in rows:
    items.setdefault(i.external_id, []).append(
        [str(i.open_amount), i.state])
debtors = [d.external_id for d in Debtor.find(
    [('administration.name', '=', {administration!r})])]
links = {{l.administration.name: dict(state=l.state,
    failures=l.consecutive_failures, items=l.items_imported,
    error=l.last_error, code=l.environment_code_masked)
    for l in Model.get('payt.hub.link').find([])}}
print(json.dumps(dict(items=items, debtors=debtors, links=links)))
''')


def open_in_erp(state):
    return {k: v[0][0] for k, v in state['items'].items()
            if v[0][1] == 'open'}


@pytest.fixture(scope='module')
def sims():
    imuis = ImuisSimulator(debtors=30, items=240, seed=11,
                           partner_keys=[PARTNER_KEY],
                           environments={ENVIRONMENT: 2000}).start()
    snel = SnelstartSimulator(debtors=30, items=240, seed=11,
                              client_keys=[CLIENT_KEY]).start()
    yield imuis, snel
    imuis.stop()
    snel.stop()


@pytest.fixture(scope='module')
def linked(erp, sims):
    imuis, snel = sims
    out = hub(erp, 'configure', '--database', DATABASE,
              '--imuis-partner-key', 'env:K1', '--snelstart-primary', '-',
              '--snelstart-secondary', SECONDARY_KEY,
              input=PRIMARY_KEY + '\n')
    assert out.returncode == 0, out.stderr
    assert PARTNER_KEY not in out.stdout and PRIMARY_KEY not in out.stdout
    # wrong code: refused with a clear message, exit code 2
    out = hub(erp, 'link', '--database', DATABASE, '--administration',
              'Imuis BV', '--package', 'imuis', '--code', 'WRONG-CODE-1',
              '--base-url', f'{imuis.url}/ws1_xml.asmx?WSDL')
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert 'does not know the environment code' in out.stderr
    assert 'WRONG-CODE-1' not in out.stderr
    out = hub(erp, '-v', 'link', '--database', DATABASE, '--administration',
              'Imuis BV', '--package', 'imuis', '--code', 'env:CODE',
              '--base-url', f'{imuis.url}/ws1_xml.asmx?WSDL')
    assert out.returncode == 0, out.stderr
    assert 'active' in out.stdout
    for secret in SECRETS:
        assert secret not in out.stdout + out.stderr
    out = hub(erp, 'link', '--database', DATABASE, '--administration',
              'Snel BV', '--package', 'snelstart', '--code', '-',
              '--base-url', f'{snel.url}/v2/',
              '--auth-url', f'{snel.url}/b2b/token', input=CLIENT_KEY)
    assert out.returncode == 0, out.stderr
    return erp


def test_link_errors_and_unknown_administration(linked):
    out = hub(linked, 'link', '--database', DATABASE, '--administration',
              'Nobody BV', '--package', 'imuis', '--code', 'x' * 10)
    assert out.returncode == 2
    assert "no administration named 'Nobody BV'" in out.stderr
    assert 'Imuis BV' in out.stderr


@pytest.mark.parametrize('package', ['imuis', 'snelstart'])
def test_killed_syncs_end_with_exactly_the_source_items(linked, sims,
                                                        package):
    imuis, snel = sims
    sim, name = (imuis, 'Imuis BV') if package == 'imuis' else \
        (snel, 'Snel BV')
    rng = random.Random()
    logs = []
    killed = 0
    for attempt in range(4):
        proc = subprocess.Popen(
            [sys.executable, '-m', 'payt_hub.cli', '-v', 'sync',
             '--database', DATABASE, '--administration', name],
            env=linked, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        # kill after a random number of source requests: mid-sync, between
        # or during page imports
        stop_after = rng.randint(2, 12) if attempt == 0 else \
            rng.randint(1, 20)
        seen = 0
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if 'HTTP Post to' in line or 'HTTP Request: GET' in line:
                seen += 1
                if seen >= stop_after:
                    proc.send_signal(signal.SIGKILL)
                    killed += 1
                    break
        logs.append(''.join(lines))
        out, _ = proc.communicate(timeout=120)
        logs.append(out)
    out = hub(linked, '-v', 'sync', '--database', DATABASE,
              '--administration', name, '--json')
    logs.append(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    assert killed, 'no sync was killed mid-way'
    result, = json.loads(out.stdout)
    assert result['ok'] and result['status']['state'] == 'active'

    state = erp_items(linked, name)
    assert all(len(rows) == 1 for rows in state['items'].values())
    expected = {k: Decimal(v) for k, v in sim.open_items().items()}
    got = {k: Decimal(v) for k, v in open_in_erp(state).items()}
    assert got == expected
    assert len(state['debtors']) == len(set(state['debtors'])) == \
        len(sim.state()['debtors'])

    # an item paid in the package is closed in the ERP on the next sync
    paid = sorted(expected)[0]
    if package == 'imuis':
        sim.pay(paid)
    else:
        sim.pay(id=paid)
    out = hub(linked, '-v', 'sync', '--database', DATABASE,
              '--administration', name)
    logs.append(out.stdout + out.stderr)
    assert out.returncode == 0, out.stdout + out.stderr
    state = erp_items(linked, name)
    assert state['items'][paid][0][1] != 'open'
    got = {k: Decimal(v) for k, v in open_in_erp(state).items()}
    assert got == {k: Decimal(v) for k, v in sim.open_items().items()}
    assert state['links'][name]['state'] == 'active'
    assert state['links'][name]['code'] == '*****' + (
        ENVIRONMENT if package == 'imuis' else CLIENT_KEY)[-3:]

    text = '\n'.join(logs)
    assert 'DEBUG' in text  # the logs were verbose and still clean
    for secret in SECRETS:
        assert secret not in text


def test_failing_package_is_booked_on_the_link(linked, sims):
    imuis, _ = sims
    imuis.fail('500', count=100, op='GetStamtabelRecords')
    try:
        out = hub(linked, 'sync', '--database', DATABASE,
                  '--administration', 'Imuis BV', '--json',
                  timeout=600)
    finally:
        imuis.control_reset_failures()
    assert out.returncode == 1, out.stderr
    result, = json.loads(out.stdout)
    assert not result['ok']
    assert result['status']['state'] == 'failed'
    assert result['status']['failing_days'] == 1
    state = erp_items(linked, 'Imuis BV')
    assert 'GetStamtabelRecords' in state['links']['Imuis BV']['error']
    # and the next good sync puts it back
    out = hub(linked, 'sync', '--database', DATABASE,
              '--administration', 'Imuis BV')
    assert out.returncode == 0, out.stdout + out.stderr
    state = erp_items(linked, 'Imuis BV')
    assert state['links']['Imuis BV']['state'] == 'active'
    assert state['links']['Imuis BV']['failures'] == 0


def test_celery_task_uses_the_erp_links(linked, sims, monkeypatch):
    """sync_link(<payt.hub.link id>) eagerly, with the ERP configured."""
    code = '''
import json, sys
from payt_hub import celery_app
celery_app.configure('in-process')
print(json.dumps(celery_app.sync_link.delay(sys.argv[1]).get(),
    default=str))
'''
    link = query(linked, "print(json.dumps(Model.get('payt.hub.link').find("
                         "[('administration.name', '=', 'Snel BV')])[0].id))")
    env = dict(linked, PAYT_DATABASE=DATABASE, PAYT_LINKS_FILE='')
    out = subprocess.run([sys.executable, '-c', code, str(link)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['ok'] and result['status']['state'] == 'active'
    assert result['link'] == link
