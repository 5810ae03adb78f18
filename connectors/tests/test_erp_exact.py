"""Exact Online end to end: the simulator on a loopback port -> payt-hub
in separate processes (one SIGKILLed mid-sync) -> a real Tryton database.
Each process refreshes the token once: a sync only works when the one
before it committed the rotated refresh token in the ERP."""
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip('proteus')
pytest.importorskip('trytond.modules.payt_dunning')

from payt_hub.simulators.exact import (  # noqa: E402
    CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, ExactSimulator)

from .test_erp import BIN, DATABASE, SETUP, hub, open_in_erp  # noqa: E402
from .test_erp import erp_items  # noqa: E402

NAME = 'Exact BV'


@pytest.fixture(scope='module')
def exact_erp(tmp_path_factory):
    path = tmp_path_factory.mktemp('erp-exact')
    (path / 'pass').write_text('admin-password\n')
    (path / f'{DATABASE}.sqlite').touch()
    env = dict(os.environ, TRYTOND_DATABASE__URI='sqlite://',
               TRYTOND_DATABASE__PATH=str(path),
               TRYTONPASSFILE=str(path / 'pass'), PYTHONUNBUFFERED='1',
               EXS=CLIENT_SECRET)
    env.pop('DB_NAME', None)
    env.pop('TRYTOND_CONFIG', None)
    subprocess.run([os.path.join(BIN, 'trytond-admin'), '-d', DATABASE,
                    '--all', '-u', 'payt_dunning',
                    '--activate-dependencies', '--email',
                    'admin@example.com'], env=env, check=True,
                   capture_output=True, timeout=300)
    subprocess.run([sys.executable, '-c', SETUP, DATABASE, NAME], env=env,
                   check=True, timeout=120)
    return env


@pytest.fixture(scope='module')
def exact_sim():
    sim = ExactSimulator(debtors=20, items=90, seed=13, page_size=10).start()
    yield sim
    sim.stop()


def test_exact_link_sync_kill_and_resume(exact_erp, exact_sim):
    out = hub(exact_erp, 'configure', '--database', DATABASE,
              '--exact-client-id', CLIENT_ID,
              '--exact-client-secret', 'env:EXS',
              '--exact-redirect-uri', REDIRECT_URI,
              '--service-override', f'exact={exact_sim.url}')
    assert out.returncode == 0, out.stderr
    assert CLIENT_SECRET not in out.stdout
    code = exact_sim.authorize()
    out = hub(exact_erp, 'link', '--database', DATABASE, '--administration',
              NAME, '--package', 'exact', '--code', '-', input=code)
    assert out.returncode == 0, out.stderr
    assert 'active' in out.stdout

    # killed right after its first API call (the token was rotated and
    # stored before that call)
    proc = subprocess.Popen(
        [sys.executable, '-m', 'payt_hub.cli', '-v', 'sync', '--database',
         DATABASE, '--administration', NAME], env=exact_erp,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    for line in proc.stdout:
        log.append(line)
        if 'HTTP Request: GET' in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert exact_sim.refreshes >= 1

    for _ in range(2):  # each run refreshes with what the last one stored
        out = hub(exact_erp, '-v', 'sync', '--database', DATABASE,
                  '--administration', NAME)
        assert out.returncode == 0, out.stdout + out.stderr
        log.append(out.stdout + out.stderr)
    state = erp_items(exact_erp, NAME)
    assert open_in_erp(state) == exact_sim.open_items()
    assert all(len(rows) == 1 for rows in state['items'].values())
    assert state['links'][NAME]['state'] == 'active'
    text = ''.join(log)
    for secret in [CLIENT_SECRET, code, *exact_sim.refresh_tokens,
                   *exact_sim.access_tokens]:
        assert secret not in text
