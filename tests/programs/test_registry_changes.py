"""An administrator's registry writes are relayed jobs of custodial wallets (review finding M4):
the registrar wallet registers a new utility, the utility's wallet sends its endpoints and its
programs, the API sends nothing from the operator's key, and the catalog follows only what
landed. One change is open per utility at a time, and a utility asks a limited number an hour
(the operator pays their gas)."""

from __future__ import annotations

import asyncio

from eth_account import Account
from sqlmodel import select

from api.container import Services
from chain.profiles import deployer_key
from identity.models import Customer, Tenant
from programs import repository
from programs.models import RegistryChange
from programs.operator import onboard_utility
from programs.publishing import UtilitySpec
from programs.registry import registry_of
from programs.registry_changes import REGISTRAR_NAME
from registry_client.onchain import program_id_of, utility_id_of
from relayer.models import JobKind, RelayTransaction
from relayer.runner import RunningRelayer
from tests.conftest import AUDIENCE
from tests.support.graphql import error_codes, gql
from tests.support.registry_changes import newest_change, until_landed
from tests.support.relayer_pause import relayer_paused
from tests.support.utilities import fresh_utility
from wallet.models import Wallet

REGISTER = """
mutation($input: RegisterUtilityInput!) { registerUtility(input: $input) { registered } }
"""
UPSERT = """
mutation($input: UpsertProgramInput!) {
  upsertProgram(input: $input) { id active lastChange { status target externalId } }
}
"""
VIEW = """
query { utilityAdmin { registered region controlEndpoints { protocol endpoint }
  programs { id active } } }
"""
PROGRAMS = """
query($site: SiteAddressInput!) { programs(siteAddress: $site) { id } }
"""
SITE = {
    "site": {
        "line1": "1 Main St",
        "city": "Portland",
        "region": "US-OR",
        "postalCode": "97205",
        "country": "US",
    }
}
TERRITORY = {
    "input": {
        "country": "US",
        "region": "US-OR",
        "postalCodes": ["97201-97209"],
        "controlEndpoints": [{"protocol": "OPENADR_3", "endpoint": "https://vtn.or.example"}],
    }
}


def program(external_id: str, fee: str = "1") -> dict:
    return {
        "input": {
            "externalId": external_id,
            "name": f"Program {external_id}",
            "connectionFee": fee,
            "protocols": ["OPENADR_3"],
            "eligibleDeviceTypes": ["BATTERY"],
        }
    }


async def operator_sent(services: Services) -> int:
    operator = Account.from_key(deployer_key(services.settings, services.chain.profile))
    return await services.chain.web3.eth.get_transaction_count(operator.address, "pending")


async def registry_jobs(services: Services) -> list[tuple[str, str]]:
    """(sender's wallet address, status) of every REGISTRY job, oldest first."""
    async with services.db.session() as session:
        rows = await session.execute(
            select(Wallet.address, RelayTransaction.status)
            .join(Wallet, Wallet.id == RelayTransaction.wallet_id)
            .where(RelayTransaction.kind == JobKind.REGISTRY)
            .order_by(RelayTransaction.created_at)
        )
        return [(address, status) for address, status in rows.all()]


async def test_registering_and_publishing_are_relayed_and_the_operator_sends_nothing(
    client, relayer, registrar: str, services: Services
) -> None:
    operator_before = await operator_sent(services)
    jobs_before = len(await registry_jobs(services))
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        async with services.db.session() as session:
            slug = (await session.get_one(Tenant, tenant_id)).slug

        body = await gql(client, REGISTER, TERRITORY, token=admin)
        assert body["data"]["registerUtility"] == {"registered": False}, body
        asked = await newest_change(client, admin)
        assert asked["target"] == "UTILITY" and asked["status"] in ("REGISTERING", "SENDING")

        landed = await until_landed(client, admin)
        assert landed["status"] == "CONFIRMED" and landed["txHash"], landed
        view = (await gql(client, VIEW, token=admin))["data"]["utilityAdmin"]
        assert view["registered"] and view["region"] == "US-OR"
        assert view["controlEndpoints"] == [
            {"protocol": "OPENADR_3", "endpoint": "https://vtn.or.example"}
        ]
        record = await registry_of(services.chain).utility(utility_id_of(slug))
        assert record is not None and record.control_endpoints == {
            "OPENADR_3": "https://vtn.or.example"
        }

        body = await gql(client, UPSERT, program("dr-relayed"), token=admin)
        published = body["data"]["upsertProgram"]
        assert published["active"] is False, "not offered before it lands"
        assert published["lastChange"] == {
            "status": "SENDING",
            "target": "PROGRAM",
            "externalId": "dr-relayed",
        }
        offered = (await gql(client, PROGRAMS, SITE))["data"]["programs"]
        assert published["id"] not in {p["id"] for p in offered}

        assert (await until_landed(client, admin))["status"] == "CONFIRMED"
        offered = (await gql(client, PROGRAMS, SITE))["data"]["programs"]
        assert published["id"] in {p["id"] for p in offered}
        on_chain = await registry_of(services.chain).program(
            program_id_of(utility_id_of(slug), "dr-relayed")
        )
        assert on_chain is not None and on_chain.connection_fee == 10**18

    registrar_job, endpoints_job, program_job = (await registry_jobs(services))[jobs_before:]
    assert registrar_job == (registrar, "CONFIRMED"), "the registrar wallet registers"
    assert endpoints_job[0] == program_job[0] == record.admin, "the utility's wallet sends"
    assert await operator_sent(services) == operator_before, "the operator's key sent nothing"


async def test_one_change_at_a_time_and_at_most_so_many_an_hour(
    client, relayer: RunningRelayer, registrar: str, services: Services, monkeypatch
) -> None:
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        await gql(client, REGISTER, TERRITORY, token=admin)
        assert (await until_landed(client, admin))["status"] == "CONFIRMED"

        async with relayer_paused(relayer, services):
            first = await gql(client, UPSERT, program("dr-one"), token=admin)
            assert "errors" not in first, first
            jobs = len(await registry_jobs(services))
            second = await gql(client, UPSERT, program("dr-two"), token=admin)
            assert error_codes(second) == ["REGISTRY_CHANGE_UNDER_WAY"], second
            assert len(await registry_jobs(services)) == jobs, "nothing queued for the second"
        assert (await until_landed(client, admin))["status"] == "CONFIRMED"

        async with services.db.session() as session:
            asked = (
                await session.execute(
                    select(RegistryChange.id).where(RegistryChange.tenant_id == tenant_id)
                )
            ).all()
        limit = {"admin_registry_changes_per_hour": len(asked)}
        monkeypatch.setattr(services, "settings", services.settings.model_copy(update=limit))
        jobs = len(await registry_jobs(services))
        limited = await gql(client, UPSERT, program("dr-three"), token=admin)
        assert error_codes(limited) == ["RATE_LIMITED"], limited
        assert 0 < limited["errors"][0]["extensions"]["retryAfterSeconds"] <= 3600
        assert len(await registry_jobs(services)) == jobs, "nothing queued past the limit"


async def test_the_registrar_is_a_system_wallet_of_the_platform(
    registrar: str, services: Services
) -> None:
    """Granted by the operator's command; no token of any issuer signs in as it."""
    assert await registry_of(services.chain).is_registrar(registrar)
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == registrar))
        ).scalar_one()
        customer = await session.get_one(Customer, wallet.customer_id)
    assert customer.subject == REGISTRAR_NAME and customer.kind == "SYSTEM"


async def wait_change_row(services: Services, tenant_id: str, *, timeout: float = 60) -> str:
    """The newest change's status once it has ended, read from the database only (no API read
    moves it on: the processor's follower must)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        async with services.db.session() as session:
            status = (
                await session.execute(
                    select(RegistryChange.status)
                    .where(RegistryChange.tenant_id == tenant_id)
                    .order_by(RegistryChange.created_at.desc())
                    .limit(1)
                )
            ).scalar_one()
        if status not in ("REGISTERING", "SENDING"):
            return status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.2)


async def test_the_processor_follows_a_change_to_the_catalog_with_no_read(
    client, relayer, processor, registrar: str, services: Services
) -> None:
    """The follower moves a registration on to its endpoints and to the catalog by itself, and
    a territory of 128 entries (the registry's most) gets the gas it needs."""
    postal = [f"{97000 + n}" for n in range(128)]
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        territory = {"input": {**TERRITORY["input"], "postalCodes": postal}}
        body = await gql(client, REGISTER, territory, token=admin)
        assert "errors" not in body, body

        assert await wait_change_row(services, tenant_id) == "CONFIRMED"
        async with services.db.session() as session:
            row = await repository.utility_of_tenant(session, tenant_id)
        assert row is not None and list(row.postal_codes) == postal


async def test_a_change_the_registry_would_refuse_queues_nothing(
    client, relayer, registrar: str, services: Services
) -> None:
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, _tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        await gql(client, REGISTER, TERRITORY, token=admin)
        assert (await until_landed(client, admin))["status"] == "CONFIRMED"
        jobs = len(await registry_jobs(services))

        refused = program("dr-nobody")
        refused["input"]["protocols"] = ["OPENADR_3"] * 17  # the registry takes 16 at most
        body = await gql(client, UPSERT, refused, token=admin)

        assert error_codes(body) == ["INVALID_INPUT"], body
        assert "TooManyProtocols" in body["errors"][0]["message"]
        assert len(await registry_jobs(services)) == jobs, "no job pays for a known revert"
        assert (await newest_change(client, admin))["target"] == "UTILITY", "no change recorded"


async def test_a_registration_that_fails_on_chain_ends_failed_and_shows_what_landed(
    client, relayer: RunningRelayer, registrar: str, services: Services
) -> None:
    """The registrar's job reverts (the operator registered the utility meanwhile): the change
    is FAILED with the registry's reason, and the catalog shows the record that is there."""
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        async with services.db.session() as session:
            tenant = await session.get_one(Tenant, tenant_id)
        async with relayer_paused(relayer, services):
            await gql(client, REGISTER, TERRITORY, token=admin)
            operator = deployer_key(services.settings, services.chain.profile)
            spec = UtilitySpec(
                country="US", region="US-WA", postal_codes=["98101"], control_endpoints={}
            )
            await onboard_utility(services, tenant=tenant, spec=spec, operator_key=operator)

        failed = await until_landed(client, admin)
        assert failed["status"] == "FAILED" and failed["error"], failed
        view = (await gql(client, VIEW, token=admin))["data"]["utilityAdmin"]
        assert view["registered"] and view["region"] == "US-WA"
