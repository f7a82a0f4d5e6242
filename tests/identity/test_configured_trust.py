"""Trust follows the configuration, at every start: a utility removed from OVPP_TENANTS is
refused at the next start, and the development provider's utility is trusted in development
only. The rows stay, for history; the trust does not.

Each test starts the API twice on a database of its own, as an operator restarts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select

from api.app import create_app
from api.container import Services
from core.db import Database
from core.defaults import DEV_TENANT_SLUG
from core.settings import load_settings
from core.tenant_config import TenantConfig
from devsupport.anvil import LocalChain
from devsupport.databases import fresh_database
from identity.models import Customer, Tenant
from tests.support.databases import DATABASE_PREFIX, POSTGRES_ADMIN_URL
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from wallet.kms import LocalKeyEncryptionKey

VIEWER = "query { viewer { id } }"
KEK = LocalKeyEncryptionKey.generate_base64()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(
        request.param, directory=tmp_path, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
    ) as url:
        yield url


@pytest.fixture
def issuers() -> Iterator[dict[str, TestIssuer]]:
    started = {name: TestIssuer(audience=f"https://{name}.example") for name in ("a", "b", "dev")}
    for issuer in started.values():
        issuer.start()
    yield started
    for issuer in started.values():
        issuer.stop()


def tenant(name: str, issuer: TestIssuer) -> TenantConfig:
    return TenantConfig(
        slug=f"utility-{name}", name=name, issuer=issuer.issuer, audience=issuer.audience
    )


@asynccontextmanager
async def started(
    database: str, anvil: LocalChain, address_book: Path, tmp_path: Path, **values: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The API as ``serve`` starts it on ``database``; stopped (and forgotten) on exit."""
    settings = load_settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database,
        rpc_url=anvil.rpc_url,
        address_book=address_book,
        kek=KEK,
        **values,
    )
    services = await Services.start(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(settings, services=services))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await services.close()


async def signs_in(client: httpx.AsyncClient, issuer: TestIssuer, subject: str) -> list[str]:
    """The error codes of ``viewer`` for ``subject``'s token ([] when it signed in)."""
    return error_codes(await gql(client, VIEWER, token=issuer.mint(sub=subject)))


async def rows(database: str, *_where: object) -> tuple[dict[str, bool], set[str]]:
    """Every utility (slug → enabled) and every customer's subject, read from the tables."""
    db = Database(database)
    try:
        async with db.session() as session:
            tenants = {t.slug: t.enabled for t in (await session.execute(select(Tenant))).scalars()}
            subjects = set((await session.execute(select(Customer.subject))).scalars())
        return tenants, subjects
    finally:
        await db.dispose()


async def test_a_utility_removed_from_the_configuration_is_untrusted_at_the_next_start(
    database: str,
    anvil: LocalChain,
    address_book: Path,
    tmp_path: Path,
    issuers: dict[str, TestIssuer],
) -> None:
    a, b = tenant("a", issuers["a"]), tenant("b", issuers["b"])
    where = (database, anvil, address_book, tmp_path)
    async with started(*where, environment="production", tenants=[a, b]) as client:
        assert await signs_in(client, issuers["a"], "alice") == []
        assert await signs_in(client, issuers["b"], "bob") == []

    async with started(*where, environment="production", tenants=[a]) as client:
        assert await signs_in(client, issuers["a"], "alice") == []
        assert await signs_in(client, issuers["b"], "bob") == ["UNAUTHENTICATED"]
        assert await signs_in(client, issuers["b"], "bob-new") == ["UNAUTHENTICATED"]

    tenants, subjects = await rows(*where)
    assert tenants == {"utility-a": True, "utility-b": False}  # B's row stays, untrusted
    assert subjects == {"alice", "bob"}  # nothing provisioned for B's refused tokens

    # configured again, trusted again: its customers find their wallets
    async with started(*where, environment="production", tenants=[a, b]) as client:
        assert await signs_in(client, issuers["b"], "bob") == []
    assert (await rows(*where))[0] == {"utility-a": True, "utility-b": True}


async def test_a_development_database_started_in_production_does_not_trust_the_dev_issuer(
    database: str,
    anvil: LocalChain,
    address_book: Path,
    tmp_path: Path,
    issuers: dict[str, TestIssuer],
) -> None:
    a, dev = tenant("a", issuers["a"]), issuers["dev"]
    where = (database, anvil, address_book, tmp_path)
    # the development provider's issuer is http://127.0.0.1:<dev_oidc_port>: the test issuer's
    as_dev_provider = {"dev_oidc_port": dev.port, "dev_audience": dev.audience}
    async with started(*where, environment="development", tenants=[a], **as_dev_provider) as client:
        assert await signs_in(client, dev, "demo") == []

    async with started(
        *where,
        environment="production",
        tenants=[a],
        metrics_token="metrics-scraper-0123456789",
        **as_dev_provider,
    ) as client:
        assert await signs_in(client, dev, "demo") == ["UNAUTHENTICATED"]
        assert await signs_in(client, issuers["a"], "alice") == []

    tenants, _ = await rows(*where)
    assert tenants == {"utility-a": True, DEV_TENANT_SLUG: False}


async def test_only_the_api_writes_trust_a_relayer_or_an_operator_command_reads_it(
    database: str,
    anvil: LocalChain,
    address_book: Path,
    tmp_path: Path,
    issuers: dict[str, TestIssuer],
) -> None:
    """A relayer or an operator's command started without ``OVPP_TENANTS`` (it has no use for
    it) must not disable every utility, nor bring back one the API no longer trusts."""
    a, b = tenant("a", issuers["a"]), tenant("b", issuers["b"])
    where = (database, anvil, address_book, tmp_path)
    async with started(*where, environment="production", tenants=[a]):
        pass
    for tenants in ([], [a, b]):
        settings = load_settings(
            _env_file=None,
            environment="production",
            data_dir=tmp_path / "data",
            database_url=database,
            rpc_url=anvil.rpc_url,
            address_book=address_book,
            kek=KEK,
            tenants=tenants,
        )
        other_process = await Services.start(settings, writes_trust=False)
        await other_process.close()
        assert (await rows(*where))[0] == {"utility-a": True}
