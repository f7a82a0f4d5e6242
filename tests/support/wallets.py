"""A signed-in customer with a funded custodial wallet, and chain reads for assertions."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from web3 import Web3

from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.deploy import Deployer
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer


@dataclass
class Customer:
    token: str
    address: str
    subject: str


class FundedCustomer(Protocol):
    """The ``funded_customer`` fixture: a new customer of the test utility whose wallet holds
    ``ovpp`` and ``stablecoin`` (base units)."""

    async def __call__(self, *, ovpp: int = 0, stablecoin: int = 0) -> Customer: ...


async def new_customer(
    client: httpx.AsyncClient,
    issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    *,
    ovpp: int = 0,
    stablecoin: int = 0,
    scope: str = "wallet:read wallet:sign",
) -> Customer:
    subject = f"customer-{uuid.uuid4().hex[:12]}"
    token = issuer.mint(sub=subject, email=f"{subject}@example.com", scope=scope)
    body = await gql(client, "{ viewer { wallet { address } } }", token=token)
    address = body["data"]["viewer"]["wallet"]["address"]
    if ovpp:
        deployer.mint(token=contracts.ovpp_token, to=address, amount=ovpp)
    if stablecoin:
        deployer.mint(token=contracts.stablecoin, to=address, amount=stablecoin)
    return Customer(token=token, address=address, subject=subject)


class ChainReader:
    def __init__(self, deployer: Deployer, contracts: AddressBook) -> None:
        self.web3: Web3 = deployer.web3
        abi = artifact("OVPPToken").abi
        self.ovpp = self.web3.eth.contract(address=contracts.ovpp_token, abi=abi)
        self.usd = self.web3.eth.contract(address=contracts.stablecoin, abi=abi)

    def native(self, address: str) -> int:
        return int(self.web3.eth.get_balance(Web3.to_checksum_address(address)))

    def ovpp_of(self, address: str) -> int:
        return int(self.ovpp.functions.balanceOf(Web3.to_checksum_address(address)).call())

    def usd_of(self, address: str) -> int:
        return int(self.usd.functions.balanceOf(Web3.to_checksum_address(address)).call())

    def receipt(self, tx_hash: str) -> Any:
        return self.web3.eth.get_transaction_receipt(tx_hash)


TRANSACTION_FIELDS = (
    "id status hash amount to feeAmount sponsored error token { symbol } feeToken { symbol }"
)


async def wait_for_status(
    client: httpx.AsyncClient,
    token: str,
    transaction_id: str,
    *,
    final: tuple[str, ...] = ("CONFIRMED", "FAILED"),
    timeout: float = 60.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    query = f"query($id: ID!) {{ transaction(id: $id) {{ {TRANSACTION_FIELDS} }} }}"
    while True:
        body = await gql(client, query, {"id": transaction_id}, token=token)
        assert "errors" not in body, body
        node = body["data"]["transaction"]
        if node["status"] in final:
            return node
        if time.monotonic() > deadline:
            raise AssertionError(
                f"transaction {transaction_id} still {node['status']} after {timeout} s"
            )
        await asyncio.sleep(0.05)


def fresh_address() -> str:
    """A random address nobody holds a key for: a recipient that starts with nothing."""
    return "0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8]


async def create_wallets(
    client: httpx.AsyncClient, test_issuer: TestIssuer, *, count: int, label: str
) -> list[str]:
    """``count`` new customers, signed in once each (which makes their wallets): their addresses."""
    addresses = []
    for index in range(count):
        token = test_issuer.mint(
            sub=f"{label}-{uuid.uuid4().hex[:12]}", email=f"{label}-{index}@example.com"
        )
        body = await gql(client, "query { viewer { wallet { address } } }", token=token)
        assert "errors" not in body, body
        addresses.append(body["data"]["viewer"]["wallet"]["address"])
    return addresses
