"""``registerUtility``'s fee recipient is an address a client types: a typo (its EIP-55 checksum
fails) or a value without ``0x`` is refused before anything is written on chain."""

from __future__ import annotations

from eth_account import Account

from api.container import Services
from identity.models import Tenant
from programs.registry import registry_of
from registry_client.onchain import utility_id_of
from tests.conftest import AUDIENCE
from tests.support.graphql import error_codes, gql
from tests.support.utilities import fresh_utility

REGISTER = """
mutation($input: RegisterUtilityInput!) { registerUtility(input: $input) { slug registered } }
"""


def typo_of(address: str) -> str:
    at = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    return address[:at] + address[at].swapcase() + address[at + 1 :]


async def test_a_typod_fee_recipient_is_refused_and_nothing_is_registered(
    client, relayer, services: Services
) -> None:
    recipient = Account.create().address
    while recipient[2:] in (recipient[2:].lower(), recipient[2:].upper()):
        recipient = Account.create().address
    async with fresh_utility(services, audience=AUDIENCE) as (issuer, tenant_id):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        for fee_recipient in (typo_of(recipient), recipient[2:], "0x" + "0" * 40):
            body = await gql(
                client,
                REGISTER,
                {
                    "input": {
                        "country": "US",
                        "region": "US-OR",
                        "postalCodes": ["97201-97209"],
                        "controlEndpoints": [],
                        "feeRecipient": fee_recipient,
                    }
                },
                token=admin,
            )
            assert error_codes(body) == ["INVALID_INPUT"], (fee_recipient, body)
        async with services.db.session() as session:
            slug = (await session.get_one(Tenant, tenant_id)).slug

    assert await registry_of(services.chain).utility(utility_id_of(slug)) is None
