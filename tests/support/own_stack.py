"""A test's own stack (``own_stack``, tests/conftest.py): its own database, services and app on
the session chain, with senders whose transfers are queued through GraphQL and worked to the end."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account import Account
from sqlalchemy import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.tokens import format_units
from core.db import Database
from core.settings import Settings
from identity.models import Tenant
from relayer.keys import relayer_key_for
from relayer.models import (
    PIPELINE_STATUSES,
    RelayTransaction,
)
from relayer.sponsorship import configure_sponsor
from relayer.worker import RelayerWorker
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.relayer_process import RelayerProcesses, environment_without_ovpp
from tests.support.wallets import Customer, new_customer
from wallet.models import Wallet

OVPP = 10**18
USD = 10**6
RELAYER_KEYS = 2
PHASE_TIMEOUT_SECONDS = 45.0
POLL_SECONDS = 0.01
QUOTE = """
mutation($input: TransferQuoteInput!) { quoteTransfer(input: $input) { id } }
"""


TRANSFER = """
mutation($input: TransferInput!) {
  transfer(input: $input) {
    __typename
    ... on Transaction { id }
    ... on InsufficientFunds { message }
    ... on PolicyViolation { message }
    ... on InvalidInput { message }
  }
}
"""


@dataclass
class OwnStack:
    """A database, services, app and fee treasury of one test's own, on the session chain."""

    settings: Settings
    services: Services
    client: httpx.AsyncClient
    tmp_path: Path

    def worker_env(self, *, rpc_url: str) -> dict[str, str]:
        """What ``ovpp-wallet relayer`` needs to serve this stack's database."""
        settings = self.settings
        assert settings.kek is not None and settings.address_book is not None
        return environment_without_ovpp(
            OVPP_ENVIRONMENT="development",
            OVPP_DATA_DIR=str(settings.data_dir),
            OVPP_DATABASE_URL=settings.resolved_database_url,
            OVPP_RPC_URL=rpc_url,
            OVPP_ADDRESS_BOOK=str(settings.address_book),
            OVPP_KEK=settings.kek.get_secret_value(),
            OVPP_RELAYER_KEYS=str(settings.relayer_keys),
            OVPP_TENANTS=json.dumps([tenant.model_dump() for tenant in settings.tenants]),
            OVPP_TREASURY_ADDRESS=settings.treasury_address or "",
            # A held broadcast must not time out into a retry before the test kills the worker.
            OVPP_RPC_TIMEOUT_SECONDS="120",
            OVPP_LOG_LEVEL="INFO",
        )

    def workers(self, *, rpc_url: str) -> RelayerProcesses:
        return RelayerProcesses(env=self.worker_env(rpc_url=rpc_url), logs_dir=self.tmp_path)


async def sponsor_the_stacks_utility(stack: OwnStack) -> str:
    """The stack's utility sponsors its customers' gas from now on. Returns the sponsor id."""
    async with stack.services.db.session() as session:
        tenant_id = (
            await session.execute(select(Tenant.id).where(Tenant.slug == "test-utility"))
        ).scalar_one()
        sponsor = await configure_sponsor(
            session, tenant_id=tenant_id, name="Test Utility sponsorship", add_funds_wei=10**18
        )
        return sponsor.id


async def transaction_as_shown(stack: OwnStack, transfer: QueuedTransfer) -> dict[str, str]:
    body = await gql(
        stack.client,
        "query($id: ID!) { transaction(id: $id) { status hash error } }",
        {"id": transfer.job_id},
        token=transfer.sender.customer.token,
    )
    assert "errors" not in body, body
    return body["data"]["transaction"]


@dataclass(frozen=True)
class Sender:
    customer: Customer
    wallet_id: str
    relayer_key_id: str


@dataclass(frozen=True)
class QueuedTransfer:
    job_id: str
    sender: Sender
    recipient: str
    amount: int


SENDER_OVPP = 5_000 * OVPP
SENDER_USD = 100 * USD


async def senders_on_every_key(
    stack: OwnStack,
    issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    *,
    count: int,
) -> list[Sender]:
    """At least ``count`` funded customers, more if needed until every relayer key serves one
    (a wallet's key is fixed by a hash of its id)."""
    senders: list[Sender] = []
    while len(senders) < count or len({s.relayer_key_id for s in senders}) < RELAYER_KEYS:
        # A wallet lands on a key by a hash: 24 more tries fail together about once in 2**23.
        assert len(senders) < count + 24, "wallets keep landing on one relayer key"
        senders.append(await new_sender(stack, issuer, deployer, contracts))
    return senders


async def two_senders_on_one_key(
    stack: OwnStack, issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> tuple[Sender, Sender]:
    """Two customers whose wallets share a relayer key: three customers on two keys always
    include such a pair."""
    by_key: dict[str, list[Sender]] = {}
    for sender in await senders_on_every_key(stack, issuer, deployer, contracts, count=3):
        by_key.setdefault(sender.relayer_key_id, []).append(sender)
    first, second = next(group for group in by_key.values() if len(group) >= 2)[:2]
    return first, second


async def new_sender(
    stack: OwnStack, issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> Sender:
    """A customer whose wallet holds ``SENDER_OVPP`` and ``SENDER_USD``."""
    customer = await new_customer(
        stack.client,
        issuer,
        deployer,
        contracts,
        ovpp=SENDER_OVPP,
        stablecoin=SENDER_USD,
    )
    async with stack.services.db.session() as session:
        wallet_id = (
            await session.execute(select(Wallet.id).where(Wallet.address == customer.address))
        ).scalar_one()
        key_id = await relayer_key_for(session, wallet_id)
    return Sender(customer=customer, wallet_id=wallet_id, relayer_key_id=key_id)


async def queue_transfers(
    stack: OwnStack, senders: list[Sender], *, count: int
) -> list[QueuedTransfer]:
    """``count`` OVPP transfers with the fee in stablecoin, each to a fresh recipient (so a
    double send would show in its balance), queued through GraphQL; senders in parallel."""
    plan: dict[int, list[tuple[str, int]]] = {index: [] for index in range(len(senders))}
    for number in range(count):
        recipient = Account.create().address
        plan[number % len(senders)].append((recipient, (number + 1) * OVPP // 10))

    async def queue_for(sender: Sender, items: list[tuple[str, int]]) -> list[QueuedTransfer]:
        return [
            await queue_transfer(stack, sender, recipient, amount) for recipient, amount in items
        ]

    batches = await asyncio.gather(
        *(queue_for(sender, plan[index]) for index, sender in enumerate(senders))
    )
    return [transfer for batch in batches for transfer in batch]


async def queue_transfer(
    stack: OwnStack, sender: Sender, recipient: str, amount: int
) -> QueuedTransfer:
    """One OVPP transfer with the fee in stablecoin (or sponsored, if the utility sponsors
    gas), quoted and queued through GraphQL."""
    fields = {
        "token": "OVPP",
        "to": recipient,
        "amount": format_units(amount, 18),
        "feeToken": "STABLECOIN",
    }
    quote = await gql(stack.client, QUOTE, {"input": fields}, token=sender.customer.token)
    assert "errors" not in quote, quote
    body = await gql(
        stack.client,
        TRANSFER,
        {
            "input": {
                **fields,
                "quoteId": quote["data"]["quoteTransfer"]["id"],
                "idempotencyKey": f"recovery-{recipient}",
            }
        },
        token=sender.customer.token,
    )
    assert "errors" not in body, body
    result = body["data"]["transfer"]
    assert result["__typename"] == "Transaction", result
    return QueuedTransfer(result["id"], sender, recipient, amount)


async def status_counts(db: Database) -> Counter[str]:
    async with db.session() as session:
        rows = await session.execute(
            select(RelayTransaction.status, func.count()).group_by(RelayTransaction.status)
        )
        return Counter({status: int(number) for status, number in rows.all()})


async def tick_until(
    worker: RelayerWorker, db: Database, condition: Callable[[Counter[str]], bool]
) -> None:
    """Runs an in-process worker's rounds until ``condition`` holds of the jobs' statuses."""
    deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS
    while not condition(counts := await status_counts(db)):
        assert time.monotonic() < deadline, f"jobs now: {dict(counts)}"
        if not await worker.tick():
            await asyncio.sleep(POLL_SECONDS)


async def work_until_final(stack: OwnStack, worker: RelayerWorker | None = None) -> None:
    """Runs a worker's rounds (an in-process one of its own unless given) until no job is
    open."""
    own = worker is None
    worker = worker or RelayerWorker(stack.services, name="test-relayer")
    try:
        await tick_until(
            worker,
            stack.services.db,
            lambda counts: not counts.keys() & set(PIPELINE_STATUSES),
        )
    finally:
        if own:
            await worker.rpc.close()
