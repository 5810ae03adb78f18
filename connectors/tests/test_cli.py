"""The payt-hub command as a user runs it."""
import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

BIN = os.path.join(os.path.dirname(sys.executable), 'payt-hub')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture
def simulator():
    procs = []

    def start(package):
        port = free_port()
        proc = subprocess.Popen([BIN, 'simulate', package, '--port',
                                 str(port), '--debtors', '8', '--items',
                                 '30'], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port), 0.1).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('simulator did not start')
    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True,
                          timeout=60)


def test_simulate_and_sync_imuis(simulator):
    port = simulator('imuis')
    wsdl = f'http://127.0.0.1:{port}/ws1_xml.asmx?WSDL'
    out = run('sync', '--adapter', 'imuis',
              '--set', 'partner_key=abcdefghijklmnopqrstuvwxyz',
              '--set', 'environment=00000', '--set', f'wsdl={wsdl}')
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    state = httpx.post(f'http://127.0.0.1:{port}/_control/state').json()
    assert data['open_items'] == len(state['open_items'])
    assert data['records']['debtors'] == 8
    bad = run('validate', '--adapter', 'imuis',
              '--set', 'partner_key=abcdefghijklmnopqrstuvwxyz',
              '--set', 'environment=31337', '--set', f'wsdl={wsdl}')
    assert bad.returncode == 2
    assert 'environment code' in bad.stderr
    assert 'abcdefghijklmnopqrstuvwxyz' not in bad.stderr + bad.stdout


def test_simulate_and_sync_snelstart(simulator):
    port = simulator('snelstart')
    base = f'http://127.0.0.1:{port}'
    env = dict(os.environ, SNEL_KEY='sim-koppelsleutel-0001')
    out = subprocess.run(
        [BIN, 'sync', '--adapter', 'snelstart',
         '--set', 'client_key=env:SNEL_KEY',
         '--set', 'subscription_key=sim-subscription-primary',
         '--set', f'base_url={base}/v2/',
         '--set', f'auth_url={base}/b2b/token'],
        capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    state = httpx.post(f'{base}/_control/state').json()
    assert data['open_items'] == len(state['open_items'])
