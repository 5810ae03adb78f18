"""SnelStart adapter against the simulator over real sockets."""
import time

import httpx
import pytest

from payt_hub.adapters.snelstart import SnelstartAdapter
from payt_hub.errors import HubError, LinkError, SourceDataError, \
    TransientError
from payt_hub.simulators.snelstart import CLIENT_KEY, PRIMARY_KEY
from payt_hub.sync import MemorySink, run_sync


def test_token_and_headers(snelstart, snelstart_sim):
    snelstart().validate()
    assert snelstart_sim.token_requests == 1
    # without token or subscription key the API refuses
    r = httpx.get(f'{snelstart_sim.url}/v2/relaties')
    assert r.status_code == 401


def test_wrong_client_key(snelstart):
    with pytest.raises(LinkError) as err:
        snelstart(client_key='niet-bestaand').validate()
    assert err.value.reason == 'wrong_client_key'
    assert 'koppelsleutel' in str(err.value)


def test_wrong_subscription_key(snelstart):
    with pytest.raises(LinkError) as err:
        snelstart(subscription_key='bad-key', secondary_key=None).validate()
    assert err.value.reason == 'wrong_subscription_key'


def test_unreachable_port():
    adapter = SnelstartAdapter(CLIENT_KEY, PRIMARY_KEY,
                               base_url='http://127.0.0.1:9/v2/',
                               auth_url='http://127.0.0.1:9/b2b/token',
                               timeout=1)
    with pytest.raises(LinkError) as err:
        adapter.validate()
    assert err.value.reason == 'unreachable'


def test_first_sync_and_paid_item_open_amount_zero(snelstart,
                                                   snelstart_sim):
    sink = MemorySink()
    result = run_sync(snelstart(), sink, progress=False)
    assert result.pages > 3
    assert sorted(sink.debtors) == sorted(snelstart_sim.relaties)
    assert sink.open_items() == snelstart_sim.open_items()
    fid = sorted(snelstart_sim.open_items())[0]
    r = httpx.post(f'{snelstart_sim.url}/_control/pay', json={'id': fid})
    assert r.status_code == 200
    run_sync(snelstart(), sink, progress=False)
    assert sink.items[fid]['open_amount'] == '0.00'
    assert sink.open_items() == snelstart_sim.open_items()
    assert sink.payments[f'{fid}:paid']['amount'] == \
        sink.items[fid]['amount']


def test_incremental_resync_changes_only_what_changed(snelstart,
                                                     snelstart_sim):
    sink = MemorySink()
    run_sync(snelstart(), sink, progress=False)
    fid = sorted(snelstart_sim.open_items())[2]
    snelstart_sim.pay(id=fid, amount='5.00')
    rid = sorted(snelstart_sim.relaties)[4]
    snelstart_sim.modify_relatie(rid, email='nieuw@example.nl')
    new = snelstart_sim.add_invoice(rid, '42.00')['id']
    result = run_sync(snelstart(), sink, progress=False)
    assert result.converged
    changed = {k: v for k, v in result.summary.items() if v}
    assert changed.pop('payments_created', 0) <= 1
    assert changed == {'debtors_updated': 1, 'items_created': 1,
                       'items_updated': 1}
    assert sink.items[new]['open_amount'] == '42.00'
    assert sink.open_items() == snelstart_sim.open_items()
    # a third sync with no changes changes nothing
    result = run_sync(snelstart(), sink, progress=False)
    assert result.converged and not any(result.summary.values())


def test_country_from_the_land_reference(snelstart, snelstart_sim):
    sink = MemorySink()
    run_sync(snelstart(), sink, streams=['debtors'], progress=False)
    countries = {d.get('country') for d in sink.debtors.values()}
    assert countries == {'NL', 'BE'}
    assert all('landISOCode' not in (r['vestigingsAdres'] or {})
               for r in snelstart_sim.relaties.values())


def test_429_retry_after_honoured_and_secondary_key_used(snelstart,
                                                          snelstart_sim):
    adapter = snelstart()
    adapter.validate()
    snelstart_sim.fail('429', retry_after=1, key='primary',
                       op='/v2/relaties')
    start = time.monotonic()
    rows = adapter.get('relaties')
    assert time.monotonic() - start >= 1.0
    assert len(rows) == len(snelstart_sim.relaties)
    assert snelstart_sim.keys_used[-2:] == ['primary', 'secondary']


def test_500_retried_then_fails_cleanly(snelstart, snelstart_sim):
    snelstart_sim.fail('500', count=100, op='/v2/verkoopfacturen')
    sink = MemorySink()
    with pytest.raises(TransientError):
        run_sync(snelstart(attempts=3), sink, progress=False)
    assert 'open_items' not in sink.cursors
    assert sum(1 for r in snelstart_sim.requests
               if 'verkoopfacturen' in r) == 3


def test_500_then_recovers(snelstart, snelstart_sim):
    snelstart_sim.fail('500', count=2)
    sink = MemorySink()
    run_sync(snelstart(), sink, progress=False)
    assert sink.open_items() == snelstart_sim.open_items()


def test_malformed_json_refused(snelstart, snelstart_sim):
    snelstart_sim.fail('malformed', op='/v2/relaties')
    sink = MemorySink()
    with pytest.raises(SourceDataError, match='malformed JSON'):
        run_sync(snelstart(), sink, progress=False)
    assert sink.batches == []


def test_bad_odata_filter_reports_alg_0104(snelstart):
    with pytest.raises(HubError, match='ALG-0104'):
        snelstart().get('verkoopfacturen',
                        {'$filter': "modifiedOn gt datetime'2020-01-01'"})


def test_token_refreshed_when_expired(snelstart, snelstart_sim):
    adapter = snelstart()
    adapter.validate()
    snelstart_sim.expire_tokens()  # server forgot the token
    assert len(adapter.get('relaties')) == len(snelstart_sim.relaties)
    assert snelstart_sim.token_requests == 2


def test_token_refreshed_before_expiry(snelstart_sim, snelstart):
    snelstart_sim.token_ttl = 2  # refresh margin is then 1 s
    adapter = snelstart()
    adapter.validate()
    time.sleep(1.1)
    adapter.get('relaties')
    assert snelstart_sim.token_requests == 2
    assert not any('401' in r for r in snelstart_sim.requests)


def test_100k_strings_cut(snelstart, snelstart_sim):
    snelstart_sim.fail('long_strings', op='/v2/relaties')
    sink = MemorySink()
    run_sync(snelstart(), sink, streams=['debtors'], progress=False)
    assert max(len(d['name']) for d in sink.debtors.values()) == 200
