"""Sign in through the real provider and see balances, indexed from the real chain."""

from __future__ import annotations

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from devsupport.oidc_login import obtain_access_token
from devsupport.oidc_provider import DevOpenIDProvider
from tests.conftest import AUDIENCE
from tests.support.activity import indexed
from tests.support.graphql import VIEWER_BALANCES, error_codes, gql


async def test_pkce_sign_in_provisions_a_wallet_and_shows_indexed_balances(
    client,
    chain_indexer,
    services: Services,
    oidc: DevOpenIDProvider,
    deployer: Deployer,
    contracts: AddressBook,
    backend: str,
) -> None:
    email = f"pkce-{backend}@example.com"
    token = await obtain_access_token(issuer=oidc.issuer, email=email, resource=AUDIENCE)

    first = await gql(client, VIEWER_BALANCES, token=token)
    assert "errors" not in first, first
    viewer = first["data"]["viewer"]
    assert viewer["email"] == email
    address = viewer["wallet"]["address"]
    balances = {b["token"]["symbol"]: b for b in viewer["wallet"]["balances"]}
    assert set(balances) == {"OVPP", "USDC", "ETH"}
    assert all(b["raw"] == "0" for b in balances.values())
    assert balances["ETH"]["token"]["address"] is None

    deployer.mint(token=contracts.ovpp_token, to=address, amount=12_500_000_000_000_000_000)
    deployer.mint(token=contracts.stablecoin, to=address, amount=3_250_000)
    block = await indexed(services)

    second = await gql(client, VIEWER_BALANCES, token=token)
    wallet = second["data"]["viewer"]["wallet"]
    assert wallet["address"] == address, "the same sign-in must keep the same wallet"
    balances = {b["token"]["symbol"]: b for b in wallet["balances"]}
    assert balances["OVPP"]["amount"] == "12.5"
    assert balances["OVPP"]["raw"] == "12500000000000000000"
    assert balances["OVPP"]["token"]["decimals"] == 18
    assert balances["OVPP"]["token"]["address"] == contracts.ovpp_token
    assert balances["USDC"]["amount"] == "3.25"
    assert balances["USDC"]["token"]["decimals"] == 6
    assert balances["ETH"]["amount"] == "0"
    assert all(b["pending"] == "0" for b in balances.values())
    assert wallet["asOfBlock"] >= block and wallet["stale"] is False


async def test_chain_and_tokens_are_public(client, contracts: AddressBook) -> None:
    body = await gql(client, "{ chain { chainId name } tokens { symbol decimals address } }")
    assert body["data"]["chain"] == {"chainId": 31337, "name": "Local anvil"}
    assert body["data"]["tokens"] == [
        {"symbol": "OVPP", "decimals": 18, "address": contracts.ovpp_token},
        {"symbol": "USDC", "decimals": 6, "address": contracts.stablecoin},
        {"symbol": "ETH", "decimals": 18, "address": None},
    ]


async def test_viewer_without_a_token_is_unauthenticated(client) -> None:
    body = await gql(client, "{ viewer { id } }")
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["data"] is None
