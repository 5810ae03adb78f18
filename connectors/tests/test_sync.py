"""Sync engine: checkpointing, resume, batch shape, no secrets in logs."""
import datetime as dt
import logging
from decimal import Decimal

import pytest

from payt_hub.canonical import Debtor, OpenItem, Payment, to_batch
from payt_hub.errors import LinkError
from payt_hub.simulators.imuis import TEST_PARTNER_KEY
from payt_hub.simulators.snelstart import (CLIENT_KEY, PRIMARY_KEY,
                                           SECONDARY_KEY)
from payt_hub.sync import MemorySink, SinkCrash, run_sync


def test_to_batch_is_the_import_batch_shape():
    batch = to_batch(
        debtors=[Debtor('1001', 'Jansen BV', email='ap@jansen.example',
                        country='nl', vat_number='NL001234567B01')],
        items=[OpenItem('F2026-0001', '1001', dt.date(2026, 10, 31),
                        Decimal('121'), Decimal('121.00'),
                        number='2026-0001', invoice_date=dt.date(2026, 10, 1),
                        currency='EUR', description='Consultancy oktober')],
        payments=[Payment('P-77', 'F2026-0001', dt.date(2026, 11, 2),
                          Decimal('50'))],
        closed_items=['F2026-0002'])
    assert batch == {
        'debtors': [{'external_id': '1001', 'name': 'Jansen BV',
                     'kind': 'business', 'email': 'ap@jansen.example',
                     'country': 'NL', 'vat_number': 'NL001234567B01'}],
        'items': [{'external_id': 'F2026-0001', 'debtor': '1001',
                   'number': '2026-0001', 'description':
                   'Consultancy oktober', 'invoice_date': '2026-10-01',
                   'due_date': '2026-10-31', 'currency': 'EUR',
                   'amount': '121.00', 'open_amount': '121.00'}],
        'payments': [{'external_id': 'P-77', 'item': 'F2026-0001',
                      'date': '2026-11-02', 'amount': '50.00'}],
        'closed_items': ['F2026-0002']}


def test_to_batch_leaves_out_unusable_ids():
    batch = to_batch(debtors=[Debtor('x' * 65, 'Te lang'),
                              Debtor('bad\x00id', 'Controle'),
                              Debtor('ok', 'Goed')])
    assert [d['external_id'] for d in batch['debtors']] == ['ok']


def test_float_amounts_refused():
    from payt_hub.canonical import parse_decimal
    with pytest.raises(TypeError):
        parse_decimal(1.1)


def test_same_batch_twice_changes_nothing(imuis):
    sink = MemorySink()
    run_sync(imuis(), sink, progress=False)
    for batch in list(sink.batches):
        summary = sink.import_batch(batch)
        assert not any(summary.values())


@pytest.mark.parametrize('crash_after', [1, 3, 6])
def test_killed_sync_resumes_to_source_state(source, crash_after):
    sim, make, pay = source
    sink = MemorySink()
    run_sync(make(), sink, progress=False)
    pay(0)
    pay(1)
    baseline = len(sink.batches)
    # second sync dies after crash_after more pages...
    sink.crash_after = baseline + crash_after
    fresh = MemorySink(crash_after=crash_after)
    with pytest.raises(SinkCrash):
        run_sync(make(), fresh, progress=False)
    committed = [dict(b) for b in fresh.batches]
    # ...and a new process resumes from the stored cursors
    fresh.crash_after = None
    run_sync(make(), fresh, progress=False)
    assert fresh.open_items() == sim.open_items()
    assert sorted(fresh.debtors) == sorted(sim.state()['debtors'])
    # no page accepted before the crash was sent again
    for kind in ('debtors', 'items', 'payments'):
        before = [r['external_id'] for b in committed
                  for r in b.get(kind, [])]
        after = [r['external_id'] for b in fresh.batches[len(committed):]
                 for r in b.get(kind, [])]
        assert len(before) == len(set(before))
        assert not set(before) & set(after), kind
    # and the interrupted second sync on the first sink also resumes
    sink.crash_after = None
    run_sync(make(), sink, progress=False)
    assert sink.open_items() == sim.open_items()


def test_sync_logs_contain_no_credentials(caplog, imuis, imuis_sim,
                                          snelstart, snelstart_sim):
    caplog.set_level(logging.DEBUG)
    a = imuis()
    run_sync(a, MemorySink(), progress=False)
    imuis_sim.expire_sessions()
    imuis_sim.fail('500', op='GetStamtabelRecords')
    run_sync(a, MemorySink(), progress=False)
    b = snelstart()
    snelstart_sim.fail('429', key='primary', retry_after=0)
    run_sync(b, MemorySink(), progress=False)
    with pytest.raises(LinkError) as err:
        imuis(environment='54321').validate()
    with pytest.raises(LinkError) as err2:
        snelstart(client_key='geheime-sleutel-123').validate()
    text = caplog.text + str(err.value) + str(err2.value)
    # zeep really logged the SOAP envelopes (with the keys redacted)
    assert 'HTTP Post to' in caplog.text and '<ns0:PartnerKey>***' in text
    secrets = [TEST_PARTNER_KEY, '00000', '54321', CLIENT_KEY, PRIMARY_KEY,
               SECONDARY_KEY, 'geheime-sleutel-123', b._token,
               *imuis_sim.sessions]
    for secret in secrets:
        assert secret and secret not in text, secret
