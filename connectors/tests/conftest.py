import pytest

from payt_hub.adapters import get_adapter
from payt_hub.simulators.imuis import (TEST_ENVIRONMENT, TEST_PARTNER_KEY,
                                       ImuisSimulator)
from payt_hub.simulators.snelstart import (CLIENT_KEY, PRIMARY_KEY,
                                           SECONDARY_KEY, SnelstartSimulator)


@pytest.fixture
def imuis_sim():
    sim = ImuisSimulator(debtors=12, items=45, seed=7).start()
    yield sim
    sim.stop()


@pytest.fixture
def snelstart_sim():
    sim = SnelstartSimulator(debtors=12, items=45, seed=7).start()
    yield sim
    sim.stop()


def imuis_settings(sim, **overrides):
    settings = dict(partner_key=TEST_PARTNER_KEY,
                    environment=TEST_ENVIRONMENT,
                    wsdl=f'{sim.url}/ws1_xml.asmx?WSDL', page_size=10,
                    timeout=2, attempts=3, retry_wait=0.01)
    settings.update(overrides)
    return settings


def exact_settings(sim, **overrides):
    """A link authorized once (the code pasted); the caller keeps the
    rotated refresh token (``credentials_saver``)."""
    from payt_hub.simulators.exact import (CLIENT_ID, CLIENT_SECRET,
                                           REDIRECT_URI)
    settings = dict(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                    redirect_uri=REDIRECT_URI, base_url=sim.url,
                    authorization_code=sim.authorize(),
                    rate_limit='100000/minute', timeout=2, attempts=3,
                    retry_wait=0.01)
    settings.update(overrides)
    return settings


def snelstart_settings(sim, **overrides):
    settings = dict(client_key=CLIENT_KEY, subscription_key=PRIMARY_KEY,
                    secondary_key=SECONDARY_KEY,
                    base_url=f'{sim.url}/v2/',
                    auth_url=f'{sim.url}/b2b/token', page_size=10,
                    timeout=2, attempts=3, retry_wait=0.01)
    settings.update(overrides)
    return settings


@pytest.fixture
def imuis(imuis_sim):
    adapters = []

    def make(**overrides):
        adapter = get_adapter('imuis', **imuis_settings(imuis_sim,
                                                        **overrides))
        adapters.append(adapter)
        return adapter
    yield make
    for a in adapters:
        a.close()


@pytest.fixture
def snelstart(snelstart_sim):
    adapters = []

    def make(**overrides):
        adapter = get_adapter('snelstart', **snelstart_settings(
            snelstart_sim, **overrides))
        adapters.append(adapter)
        return adapter
    yield make
    for a in adapters:
        a.close()


@pytest.fixture(params=['imuis', 'snelstart'])
def source(request, imuis_sim, snelstart_sim, imuis, snelstart):
    """(simulator, adapter factory, pay(sim) -> paid id) for both packages."""
    if request.param == 'imuis':
        def pay(n=0):
            fact = sorted(imuis_sim.open_items())[n]
            imuis_sim.pay(fact)
            return fact
        return imuis_sim, imuis, pay
    def pay(n=0):
        fid = sorted(snelstart_sim.open_items())[n]
        snelstart_sim.pay(id=fid)
        return fid
    return snelstart_sim, snelstart, pay
