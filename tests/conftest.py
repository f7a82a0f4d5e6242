"""Shared fixtures: the real parts, started once per test session.

- a real anvil (``--hardfork shanghai``) on a free port, with the committed contracts deployed;
- the real development OpenID Provider (npm ``oidc-provider``) on a free port;
- a test issuer whose keys the tests hold, for the tokens a real provider never mints;
- the database twice: a SQLite file and a fresh PostgreSQL database, both migrated by Alembic.
  Every test that asks for ``services``/``client`` runs once per backend;
- a local Stripe API (localstripe) per backend, the card onramp's Stripe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from eth_account import Account

from api.app import create_app
from api.container import ONRAMP_FOLLOWERS, Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from core.migrate import upgrade_to_head
from core.settings import Settings, load_settings
from core.tenant_config import TenantConfig
from devsupport.anvil import LocalChain
from devsupport.databases import create_postgres_database, drop_postgres_database, fresh_database
from devsupport.local_stripe import LocalStripe
from devsupport.oidc_provider import DevOpenIDProvider
from identity.service import sync_tenants
from indexer.runner import RunningIndexer, start_indexer
from onramp.processor import RunningProcessor, start_onramp_processor
from relayer.runner import prepare_relayer_keys
from tests.support.databases import DATABASE_PREFIX, POSTGRES_ADMIN_URL
from tests.support.issuer import TEST_CLIENT_ID, TestIssuer
from tests.support.own_stack import RELAYER_KEYS, OwnStack
from tests.support.ports import free_port
from tests.support.wallets import ChainReader, Customer, FundedCustomer, new_customer
from wallet.kms import LocalKeyEncryptionKey

AUDIENCE = "https://wallet.ovpp.test"
STRIPE_API_KEY = "sk_test_ovpp_tests"
STRIPE_WEBHOOK_SECRET = "whsec_ovpp_tests_0123456789abcdef"
BACKENDS = ["sqlite", "postgresql"]
TEST_ADMIN_CLIENT = TEST_CLIENT_ID
"""The client of the test issuers' tokens (``TestIssuer.claims``), allowed to administer."""


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalChain]:
    chain = LocalChain(port=free_port(), log_file=tmp_path_factory.mktemp("anvil") / "anvil.log")
    chain.start()
    yield chain
    chain.stop()


@pytest.fixture(scope="session")
def deployer(anvil: LocalChain) -> Deployer:
    return Deployer(
        rpc_url=anvil.rpc_url, private_key=ANVIL_DEV_PRIVATE_KEY, progress=lambda _m: None
    )


@pytest.fixture(scope="session")
def address_book(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    book: AddressBook = deployer.deploy_all()
    path = tmp_path_factory.mktemp("chain") / "addresses.json"
    book.save(path)
    return path


@pytest.fixture(scope="session")
def contracts(address_book: Path) -> AddressBook:
    book = AddressBook.load(address_book)
    assert book is not None
    return book


@pytest.fixture(scope="session")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOpenIDProvider]:
    directory = tmp_path_factory.mktemp("oidc")
    provider = DevOpenIDProvider(
        port=free_port(),
        keys_file=directory / "jwks.json",
        audience=AUDIENCE,
        log_file=directory / "provider.log",
    )
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def test_issuer() -> Iterator[TestIssuer]:
    issuer = TestIssuer(audience=AUDIENCE)
    issuer.start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def other_issuer() -> Iterator[TestIssuer]:
    """A second utility's provider (for cross-tenant tests), trusted like the first."""
    issuer = TestIssuer(audience="https://other-utility.test")
    issuer.start()
    yield issuer
    issuer.stop()


@pytest.fixture(scope="session")
def demo_issuer(oidc: DevOpenIDProvider) -> TestIssuer:
    """Mints customers of the demo utility (the development provider's tenant, whose programs
    ``registry_demo`` seeds): a customer enrolls only in their own utility's programs."""
    return TestIssuer.of_provider(issuer=oidc.issuer, audience=AUDIENCE, keys_file=oidc.keys_file)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'ovpp.db'}"
        asyncio.run(upgrade_to_head(url))
        yield url
        return
    url = asyncio.run(create_postgres_database(POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX))
    try:
        asyncio.run(upgrade_to_head(url))
        yield url
    finally:
        asyncio.run(drop_postgres_database(POSTGRES_ADMIN_URL, url))


@pytest.fixture(scope="session")
def backend_address_book(
    database_url: str,
    deployer: Deployer,
    contracts: AddressBook,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The shared tokens and forwarder, with a registry of this backend's own: each database
    holds its own utility keys, so each needs its own registry on the shared chain."""
    registry = deployer.deploy(
        "OVPPRegistry", contracts.forwarder, contracts.ovpp_token, deployer.account.address
    )
    path = tmp_path_factory.mktemp("chain") / "addresses.json"
    contracts.model_copy(update={"registry": registry}).save(path)
    return path


@pytest.fixture(scope="session")
def localstripe(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStripe]:
    """One local Stripe API per backend: each database is an installation of its own, and
    reconciliation reads every payment of the Stripe account it is given."""
    directory = tmp_path_factory.mktemp("localstripe")
    local = LocalStripe(
        port=free_port(), state_file=directory / "state.pickle", log_file=directory / "log"
    )
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def kek() -> str:
    return LocalKeyEncryptionKey.generate_base64()


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    anvil: LocalChain,
    backend_address_book: Path,
    oidc: DevOpenIDProvider,
    test_issuer: TestIssuer,
    other_issuer: TestIssuer,
    kek: str,
    localstripe: LocalStripe,
    tmp_path_factory: pytest.TempPathFactory,
) -> Settings:
    return load_settings(
        environment="development",
        data_dir=tmp_path_factory.mktemp("data"),
        database_url=database_url,
        rpc_url=anvil.rpc_url,
        address_book=backend_address_book,
        kek=kek,
        dev_oidc_port=oidc.port,
        dev_audience=AUDIENCE,
        stripe_api_base=localstripe.url,
        stripe_api_key=STRIPE_API_KEY,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        onramp_processor_poll_seconds=0.2,
        # The program server (tests/support/program_server.py): the demo utility's OpenADR 2.0b
        # endpoint, on a port of this backend's own.
        program_server_port=free_port(),
        program_server_poll_seconds=1,
        program_server_report_seconds=1,
        indexer_poll_seconds=0.1,
        tenants=[
            TenantConfig(
                slug="test-utility",
                name="Test Utility",
                issuer=test_issuer.issuer,
                audience=AUDIENCE,
                admin_client_ids=[TEST_ADMIN_CLIENT],
            ),
            TenantConfig(
                slug="other-utility",
                name="Other Utility",
                issuer=other_issuer.issuer,
                audience=other_issuer.audience,
                admin_client_ids=[TEST_ADMIN_CLIENT],
            ),
        ],
    )


@pytest.fixture(scope="session")
async def services(settings: Settings) -> AsyncIterator[Services]:
    started = await Services.start(settings)
    yield started
    await started.close()


@pytest.fixture(scope="session")
def app(settings: Settings, services: Services):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(settings, services=services)


@pytest.fixture
async def ws_url(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    """The app served by uvicorn on a free port: its graphql-transport-ws URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def backend(database_url: str) -> str:
    return "postgresql" if database_url.startswith("postgresql") else "sqlite"


@pytest.fixture(scope="session")
async def relayer(services: Services) -> AsyncIterator[object]:
    """The relayer worker running in the test session's loop, with funded keys."""
    from relayer.runner import start_relayer

    running = await start_relayer(services, name="test-relayer")
    yield running
    await running.shutdown()


@pytest.fixture
async def chain_indexer(services: Services) -> AsyncIterator[RunningIndexer]:
    """The chain indexer running in the test session's loop for one test (balances and activity
    come from its index; it resumes from its cursor): ``tests.support.activity.indexed`` waits
    until it reached the node's head. Stopped after the test, so that it writes nothing while
    other tests watch the database."""
    running = await start_indexer(services, name="test-indexer")
    yield running
    await running.shutdown()


@pytest.fixture(scope="session")
async def registrar(services: Services, deployer: Deployer) -> str:
    """The registrar wallet holds REGISTRAR_ROLE (``ovpp-wallet registry grant-registrar``):
    administrators' registrations of new utilities can land."""
    from chain.profiles import deployer_key
    from programs.operator import grant_registrar
    from programs.registry_changes import registrar_wallet

    address = (await registrar_wallet(services)).address
    operator = deployer_key(services.settings, services.chain.profile)
    await grant_registrar(services, registrar=address, operator_key=operator)
    return address


@pytest.fixture(scope="session")
async def registry_demo(
    services: Services, relayer: object, deployer: Deployer, registrar: str
) -> object:
    """The demo vendor's models, the demo utility (US-CA, 94102–94110) and its two programs,
    on chain and in the catalog; the utility's wallet holds OVPP for sponsored fees."""
    from devsupport.demo import seed_registry_demo
    from identity.service import DEV_TENANT_SLUG
    from programs.admin import tenant_by_slug, utility_wallet

    await seed_registry_demo(services, progress=lambda _message: None)
    tenant = await tenant_by_slug(services, DEV_TENANT_SLUG)
    wallet = await utility_wallet(services, tenant)
    assert services.chain.addresses is not None
    deployer.mint(
        token=services.chain.addresses.ovpp_token, to=wallet.address, amount=1_000 * 10**18
    )
    return tenant


@pytest.fixture
async def own_stack(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    anvil: LocalChain,
    address_book: Path,
    test_issuer: TestIssuer,
    deployer: Deployer,
) -> AsyncIterator[OwnStack]:
    # Every own stack takes 200 ETH from the session's deployer for its relayer keys
    # (``prepare_relayer_keys``), and the session runs more than 50 of them: give it anvil's
    # initial 10,000 ETH again first, or the last ones could not fund their keys.
    deployer.web3.provider.make_request(
        "anvil_setBalance",  # type: ignore[arg-type]
        [deployer.account.address, hex(10_000 * 10**18)],
    )
    async with fresh_database(
        request.param, directory=tmp_path, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
    ) as database_url:
        settings = load_settings(
            environment="development",
            data_dir=tmp_path / "data",
            database_url=database_url,
            rpc_url=anvil.rpc_url,
            address_book=address_book,
            kek=LocalKeyEncryptionKey.generate_base64(),
            relayer_keys=RELAYER_KEYS,
            treasury_address=Account.create().address,  # fresh: its balance is these fees only
            tenants=[
                TenantConfig(
                    slug="test-utility",
                    name="Test Utility",
                    issuer=test_issuer.issuer,
                    audience=test_issuer.audience,
                    admin_client_ids=[TEST_ADMIN_CLIENT],
                )
            ],
        )
        services = await Services.start(settings)
        try:
            # Keys are created (and funded from the deployer) here, before any worker runs, so
            # a relayer key never sends anything but the jobs' transactions.
            await prepare_relayer_keys(services)
            app = create_app(settings, services=services)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                yield OwnStack(settings=settings, services=services, client=http, tmp_path=tmp_path)
        finally:
            await services.close()


@pytest.fixture
async def processor(app, services: Services, relayer: object) -> AsyncIterator[RunningProcessor]:  # type: ignore[no-untyped-def]
    """The onramp processor in the test's event loop, woken by the app's webhook route."""
    running = await start_onramp_processor(services, name="test-onramp", followers=ONRAMP_FOLLOWERS)
    app.state.onramp_processor = running
    yield running
    app.state.onramp_processor = None
    await running.shutdown()


@pytest.fixture(scope="session")
def chain(deployer: Deployer, contracts: AddressBook) -> ChainReader:
    """Balances and receipts read from the session chain, for assertions."""
    return ChainReader(deployer, contracts)


@pytest.fixture
def funded_customer(
    client: httpx.AsyncClient, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> FundedCustomer:
    """Makes customers of the test utility (signed in through ``client``) with funded wallets."""

    async def make(*, ovpp: int = 0, stablecoin: int = 0) -> Customer:
        return await new_customer(
            client, test_issuer, deployer, contracts, ovpp=ovpp, stablecoin=stablecoin
        )

    return make


@pytest.fixture
async def trust_restored(services: Services, settings: Settings) -> AsyncIterator[None]:
    """For a test that runs a production ``ovpp-wallet`` on the session's database: at its
    start that process trusts only its configured utilities (the development one is disabled,
    as in production it must be); afterwards the session's own trust is synced back."""
    yield
    await sync_tenants(services.db, settings)


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database with no tables yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    url = await create_postgres_database(POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX)
    try:
        yield url
    finally:
        await drop_postgres_database(POSTGRES_ADMIN_URL, url)
