"""iMUIS adapter against the simulator over real sockets."""
import datetime as dt

import httpx
import pytest

from payt_hub.adapters.imuis import ImuisAdapter, safe_parse
from payt_hub.errors import LinkError, SourceDataError, TransientError
from payt_hub.simulators.imuis import (LAUGHS_RECORDS, WSDL_PATH,
                                       XXE_RECORDS)
from payt_hub.sync import MemorySink, run_sync


def test_wsdl_served_unchanged_but_for_addresses(imuis_sim):
    text = httpx.get(f'{imuis_sim.url}/ws1_xml.asmx?WSDL').text
    vendor = open(WSDL_PATH, encoding='utf-8').read()
    local = f'http://127.0.0.1:{imuis_sim.port}/ws1_xml.asmx'
    assert text.count(local) == 2
    assert text.replace(local, 'https://cloudswitch.imuisonline.com/'
                        'ws1_xml.asmx') == vendor


def test_soap11_login_answers_in_band(imuis_sim):
    def login(key):
        envelope = (
            '<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap='
            '"http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><Login '
            'xmlns="https://cloudswitch.imuisonline.com/"><PartnerKey>'
            f'{key}</PartnerKey><Omgevingscode>00000</Omgevingscode></Login>'
            '</soap:Body></soap:Envelope>')
        return httpx.post(f'{imuis_sim.url}/ws1_xml.asmx', content=envelope,
                          headers={'Content-Type': 'text/xml; charset=utf-8',
                                   'SOAPAction': '"https://cloudswitch.'
                                   'imuisonline.com/Login"'})
    ok = login('abcdefghijklmnopqrstuvwxyz')
    assert ok.status_code == 200
    assert '<LoginResult>true</LoginResult>' in ok.text
    assert 'schemas.xmlsoap.org/soap/envelope' in ok.text
    bad = login('wrong')
    assert bad.status_code == 200  # errors are in-band, not faults
    assert '<LoginResult>false</LoginResult>' in bad.text
    assert 'PartnerKey' in bad.text


def test_validate_logs_in_over_soap12(imuis, imuis_sim):
    imuis().validate()
    assert imuis_sim.logins == 1


def test_wrong_environment_code(imuis):
    with pytest.raises(LinkError) as err:
        imuis(environment='99999').validate()
    assert err.value.reason == 'unknown_environment'
    assert 'environment code' in str(err.value)


def test_wrong_partner_key(imuis):
    with pytest.raises(LinkError) as err:
        imuis(partner_key='zyxwvutsrqponmlkjihgfedcba').validate()
    assert err.value.reason == 'wrong_partner_key'
    assert 'partner key' in str(err.value)


def test_unreachable_port(imuis_sim):
    # bundled vendor WSDL, endpoint on a port nobody listens on
    adapter = ImuisAdapter('abcdefghijklmnopqrstuvwxyz', '00000',
                           endpoint='http://127.0.0.1:9/ws1_xml.asmx',
                           attempts=2, retry_wait=0.01, timeout=1)
    with pytest.raises(LinkError) as err:
        adapter.validate()
    assert err.value.reason == 'unreachable'
    assert 'unreachable' in str(err.value)
    adapter = ImuisAdapter('abcdefghijklmnopqrstuvwxyz', '00000',
                           wsdl='http://127.0.0.1:9/ws1_xml.asmx?WSDL')
    with pytest.raises(LinkError) as err:
        adapter.validate()
    assert err.value.reason == 'unreachable'


def test_first_sync_gets_source_open_items(imuis, imuis_sim):
    sink = MemorySink()
    result = run_sync(imuis(), sink, progress=False)
    assert sorted(sink.debtors) == sorted(imuis_sim.debtors)
    assert sink.open_items() == imuis_sim.open_items()
    assert result.pages > 3  # paged with PAGESIZE 10
    # payments of the open items; none for history (items paid in full
    # before the link existed), so no "payment without invoice" alarms
    paid = {f: a for f, a in imuis_sim.state()['paid'].items()
            if f in imuis_sim.open_items()}
    assert paid
    assert {p['item']: p['amount'] for p in sink.payments.values()} == paid


def test_both_date_formats_parsed(imuis, imuis_sim):
    sink = MemorySink()
    run_sync(imuis(), sink, streams=['debtors', 'open_items'],
             progress=False)
    for fact, item in sink.items.items():
        source = imuis_sim.items[fact]
        assert item['invoice_date'] == source['_DAT'].isoformat()
        assert item['due_date'] == source['_DATVERV'].isoformat()


def test_paid_item_comes_out_with_open_amount_zero(imuis, imuis_sim):
    sink = MemorySink()
    run_sync(imuis(), sink, progress=False)
    fact = sorted(imuis_sim.open_items())[0]
    httpx.post(f'{imuis_sim.url}/_control/pay', json={'fact': fact})
    run_sync(imuis(), sink, progress=False)
    assert sink.items[fact]['open_amount'] == '0.00'
    assert fact not in sink.open_items()
    assert sink.open_items() == imuis_sim.open_items()


def test_expired_session_logs_in_again(imuis, imuis_sim):
    adapter = imuis()
    adapter.validate()
    imuis_sim.expire_sessions()
    sink = MemorySink()
    run_sync(adapter, sink, progress=False)
    assert imuis_sim.logins == 2
    assert sink.open_items() == imuis_sim.open_items()


@pytest.mark.parametrize('mode', ['xxe', 'billion_laughs', 'xxe_envelope'])
def test_hostile_xml_refused(imuis, imuis_sim, mode):
    imuis_sim.fail(mode, op='GetStamtabelRecords')
    sink = MemorySink()
    with pytest.raises(SourceDataError) as err:
        run_sync(imuis(), sink, progress=False)
    assert 'DTD' in str(err.value) or 'DOCTYPE' in str(err.value)
    assert sink.batches == [] and sink.cursors == {}


def test_safe_parse_refuses_entities_directly():
    for payload in (XXE_RECORDS, LAUGHS_RECORDS):
        with pytest.raises(SourceDataError):
            safe_parse(payload)
    with pytest.raises(SourceDataError, match='malformed'):
        safe_parse('<NewDataSet><DEB>')


def test_malformed_envelope_refused(imuis, imuis_sim):
    adapter = imuis()
    adapter.validate()
    imuis_sim.fail('malformed', op='GetStamtabelRecords')
    with pytest.raises(SourceDataError, match='malformed'):
        list(adapter.read('debtors', None))


def test_500_retried_then_succeeds(imuis, imuis_sim):
    imuis_sim.fail('500', count=2, op='GetStamtabelRecords')
    sink = MemorySink()
    run_sync(imuis(), sink, progress=False)
    assert sink.open_items() == imuis_sim.open_items()


def test_500_persistent_fails_cleanly(imuis, imuis_sim):
    imuis_sim.fail('500', count=100, op='GetStamtabelRecords')
    sink = MemorySink()
    with pytest.raises(TransientError):
        run_sync(imuis(attempts=3), sink, progress=False)
    assert sink.cursors == {} and sink.batches == []
    assert imuis_sim.requests.count('GetStamtabelRecords') == 3


def test_timeout_retried(imuis, imuis_sim):
    adapter = imuis(timeout=0.5)
    adapter.validate()
    imuis_sim.fail('timeout', seconds=1.5, op='GetStamtabelRecords')
    rows = [r for p in adapter.read('debtors', None) for r in p.records]
    assert len(rows) == len(imuis_sim.debtors)


def test_100k_strings_cut_to_erp_limits(imuis, imuis_sim):
    imuis_sim.fail('long_strings', count=2, op='GetStamtabelRecords')
    sink = MemorySink()
    run_sync(imuis(), sink, streams=['debtors', 'open_items'],
             progress=False)
    assert max(len(d['name']) for d in sink.debtors.values()) == 200
    assert max(len(d.get('street', '')) for d in sink.debtors.values()) \
        <= 200
    assert all(len(i.get('description', '')) <= 1000
               for i in sink.items.values())


def test_incremental_resync_changes_only_what_changed(imuis, imuis_sim):
    sink = MemorySink()
    run_sync(imuis(), sink, progress=False)
    fact = sorted(imuis_sim.open_items())[1]
    imuis_sim.pay(fact, amount='10.00')
    imuis_sim.modify_debtor('10003', EMAIL='nieuw@example.nl')
    new = imuis_sim.add_item('10002', '99.95', 'Nieuwe factuur')['FACT']
    result = run_sync(imuis(), sink, progress=False)
    assert result.converged
    assert {k: v for k, v in result.summary.items() if v} == {
        'debtors_updated': 1, 'items_created': 1, 'items_updated': 1,
        'payments_created': 1}
    assert new in sink.items
    assert sink.debtors['10003']['email'] == 'nieuw@example.nl'
    assert sink.open_items() == imuis_sim.open_items()
    assert sink.payments[f'{fact}:paid']['amount'] == '10.00'
    assert sink.payments[f'{fact}:paid']['date'] == dt.date.today(
    ).isoformat()
