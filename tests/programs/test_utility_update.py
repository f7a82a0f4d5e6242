"""``registerUtility`` on a registered utility brings its registry record up to date (territory,
control endpoints, fee recipient), the catalog is written from what landed on chain, and an
identical call sends nothing."""

from __future__ import annotations

from eth_account import Account

from api.container import Services
from chain.profiles import deployer_key
from identity.models import Tenant
from programs import repository
from programs.registry import registry_of
from registry_client.onchain import utility_id_of
from tests.conftest import AUDIENCE
from tests.support.graphql import gql
from tests.support.registry_changes import admin_change
from tests.support.utilities import fresh_utility
from wallet.models import Wallet

REGISTER = """
mutation($input: RegisterUtilityInput!) {
  registerUtility(input: $input) {
    registered country region postalCodes controlEndpoints { protocol endpoint }
  }
}
"""
UPSERT = """
mutation($input: UpsertProgramInput!) { upsertProgram(input: $input) { id } }
"""
VIEW = """
query { utilityAdmin {
  registered country region postalCodes controlEndpoints { protocol endpoint }
} }
"""
PROGRAMS = """
query($site: SiteAddressInput!) { programs(siteAddress: $site) { id } }
"""


def territory(region: str, postal: str, recipient: str, endpoints: dict[str, str]) -> dict:
    return {
        "input": {
            "country": "us",
            "region": region,
            "postalCodes": [postal],
            "feeRecipient": recipient,
            "controlEndpoints": [{"protocol": p, "endpoint": e} for p, e in endpoints.items()],
        }
    }


def site(region: str, postal: str) -> dict:
    return {
        "site": {
            "line1": "1 Main St",
            "city": "Somewhere",
            "region": region,
            "postalCode": postal,
            "country": "US",
        }
    }


async def sent_so_far(services: Services, tenant_id: str) -> tuple[int, int]:
    """The operator's transactions and the utility wallet's forwarder requests so far."""
    operator = Account.from_key(deployer_key(services.settings, services.chain.profile))
    sent = await services.chain.web3.eth.get_transaction_count(operator.address, "pending")
    async with services.db.session() as session:
        row = await repository.utility_of_tenant(session, tenant_id)
        wallet = await session.get_one(Wallet, row.wallet_id)
    return sent, wallet.next_forwarder_nonce


async def test_registering_again_updates_the_chain_and_the_catalog_follows(
    client, relayer, registrar, services: Services
) -> None:
    x, y = Account.create().address, Account.create().address
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        first = territory("US-NY", "10001-10010", x, {"OPENADR_3": "https://vtn.ny.example"})
        await admin_change(client, REGISTER, first, token=admin)
        program = {
            "externalId": "dr-move",
            "name": "Moving program",
            "connectionFee": "1",
            "protocols": ["OPENADR_3"],
            "eligibleDeviceTypes": ["BATTERY"],
        }
        body = await admin_change(client, UPSERT, {"input": program}, token=admin)
        program_id = body["data"]["upsertProgram"]["id"]
        ids = {
            p["id"] for p in (await gql(client, PROGRAMS, site("NY", "10005")))["data"]["programs"]
        }
        assert program_id in ids

        second = territory("US-TX", "73301", y, {"OCPP_2_0_1": "wss://csms.tx.example"})
        await admin_change(client, REGISTER, second, token=admin)
        body = await gql(client, VIEW, token=admin)
        assert body["data"]["utilityAdmin"] == {
            "registered": True,
            "country": "US",
            "region": "US-TX",
            "postalCodes": ["73301"],
            "controlEndpoints": [{"protocol": "OCPP_2_0_1", "endpoint": "wss://csms.tx.example"}],
        }
        async with services.db.session() as session:
            slug = (await session.get_one(Tenant, tenant_id)).slug
            row = await repository.utility_of_tenant(session, tenant_id)
        record = await registry_of(services.chain).utility(utility_id_of(slug))
        assert record is not None
        assert record.postal_codes == ("73301",) and record.fee_recipient == y
        assert (record.country, record.region) == ("US", "US-TX")
        assert record.control_endpoints == {"OCPP_2_0_1": "wss://csms.tx.example"}
        assert (row.country, row.region, tuple(row.postal_codes)) == (
            record.country,
            record.region,
            record.postal_codes,
        )

        ids = {
            p["id"] for p in (await gql(client, PROGRAMS, site("TX", "73301")))["data"]["programs"]
        }
        assert program_id in ids
        ids = {
            p["id"] for p in (await gql(client, PROGRAMS, site("NY", "10005")))["data"]["programs"]
        }
        assert program_id not in ids

        before = await sent_so_far(services, tenant_id)
        body = await gql(client, REGISTER, second, token=admin)
        assert "errors" not in body, body
        assert await sent_so_far(services, tenant_id) == before, "an identical call sends nothing"
