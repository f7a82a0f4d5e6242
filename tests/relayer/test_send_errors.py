"""A node answer the relayer does not understand is not final: a proxy or a node with its own
wording may answer an error for a transaction that did reach a pool. The job is followed by
its hash (its receipt, or a fee bump once stuck) and never failed, nor its nonce filled: only a
known permanent error does that (``relayer.rpc_errors.PERMANENT_ERRORS``; the failing-and-filling
tests are in test_recovery.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.rpc import JsonRpc, RpcError
from devsupport.anvil import LocalChain
from relayer.models import PIPELINE_STATUSES, JobKind, RelayAttempt, RelayerKey, RelayTransaction
from relayer.rpc_errors import PERMANENT_ERRORS, SendOutcome, classify
from relayer.worker import RelayerWorker
from tests.support.issuer import TestIssuer
from tests.support.own_stack import (
    PHASE_TIMEOUT_SECONDS,
    POLL_SECONDS,
    OwnStack,
    QueuedTransfer,
    queue_transfers,
    status_counts,
    two_senders_on_one_key,
)
from tests.support.rpc_proxy import FaultyRpcProxy
from tests.support.wallets import ChainReader

UNKNOWN_ERROR = "some new error"


@pytest.fixture
def rpc_proxy(anvil: LocalChain) -> Iterator[FaultyRpcProxy]:
    with FaultyRpcProxy(upstream=anvil.rpc_url) as proxy:
        yield proxy


@pytest.mark.parametrize(
    "message",
    [
        UNKNOWN_ERROR,
        "upstream request timeout",
        "upstream connect error or disconnect/reset before headers",
        "header not found",
        "Your app has exceeded its compute units per second capacity",
        "AlreadyKnown",
        "OldNonce, Current nonce: 7, nonce of rejected tx: 5",
        "internal error",
    ],
)
def test_an_answer_not_understood_may_have_been_sent(message: str) -> None:
    assert classify(RpcError(code=-32000, message=message)) == SendOutcome.MAYBE_SENT


@pytest.mark.parametrize("message", PERMANENT_ERRORS)
def test_each_permanent_error_is_a_refusal(message: str) -> None:
    assert classify(RpcError(code=-32000, message=f"{message}: details")) == (SendOutcome.REJECTED)


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_an_unknown_error_for_a_transaction_the_node_took_ends_confirmed(
    own_stack: OwnStack,
    rpc_proxy: FaultyRpcProxy,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Every broadcast reaches anvil (and is mined) but is answered with an error the relayer
    has never seen. Both transfers on the key end CONFIRMED, never FAILED, each executed once;
    no zero-value filler is signed at their nonces, and the key's nonces have no gap."""
    chain = ChainReader(deployer, contracts)
    first_sender, second_sender = await two_senders_on_one_key(
        own_stack, test_issuer, deployer, contracts
    )
    transfers = [
        *await queue_transfers(own_stack, [first_sender], count=1),
        *await queue_transfers(own_stack, [second_sender], count=1),
    ]
    rpc_proxy.answer_broadcasts_with_error(UNKNOWN_ERROR, forward=True)

    seen = await work_through(own_stack, rpc_proxy, transfers)

    assert rpc_proxy.answered_with_error >= len(transfers)
    await assert_confirmed_once_without_filler(own_stack, chain, transfers, seen)


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_an_unknown_error_for_a_transaction_never_sent_is_bumped_once_stuck(
    own_stack: OwnStack,
    rpc_proxy: FaultyRpcProxy,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The first broadcast is answered with an unknown error and never reaches the node: the
    job is followed by its hash, finds no receipt, and once stuck is bumped and sent again
    like any stuck job; it confirms with its second attempt, and nothing fills its nonce."""
    chain = ChainReader(deployer, contracts)
    sender, _ = await two_senders_on_one_key(own_stack, test_issuer, deployer, contracts)
    transfers = await queue_transfers(own_stack, [sender], count=1)
    rpc_proxy.answer_broadcasts_with_error(UNKNOWN_ERROR, forward=False, times=1)

    seen = await work_through(own_stack, rpc_proxy, transfers, stuck_seconds=1.0)

    assert rpc_proxy.answered_with_error == 1
    await assert_confirmed_once_without_filler(own_stack, chain, transfers, seen)
    async with own_stack.services.db.session() as session:
        attempts = list(
            (
                await session.execute(
                    select(RelayAttempt.tx_hash).where(
                        RelayAttempt.relay_transaction_id == transfers[0].job_id
                    )
                )
            ).scalars()
        )
    assert len(attempts) == 2  # the one never sent, then its bump


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_transaction_never_sent_at_the_fee_cap_is_sent_again_once_stuck(
    own_stack: OwnStack,
    rpc_proxy: FaultyRpcProxy,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """As above, but signed at the fee cap, so no bump can replace it: once stuck the same
    transaction is sent again (no new attempt), and the key does not stall behind it."""
    chain = ChainReader(deployer, contracts)
    sender, _ = await two_senders_on_one_key(own_stack, test_issuer, deployer, contracts)
    transfers = await queue_transfers(own_stack, [sender], count=1)
    rpc_proxy.answer_broadcasts_with_error(UNKNOWN_ERROR, forward=False, times=1)

    seen = await work_through(
        own_stack, rpc_proxy, transfers, stuck_seconds=1.0, fees_at_the_cap=True
    )

    assert rpc_proxy.answered_with_error == 1
    await assert_confirmed_once_without_filler(own_stack, chain, transfers, seen)
    async with own_stack.services.db.session() as session:
        attempts = list(
            (
                await session.execute(
                    select(RelayAttempt.tx_hash).where(
                        RelayAttempt.relay_transaction_id == transfers[0].job_id
                    )
                )
            ).scalars()
        )
    assert len(attempts) == 1  # the same transaction, sent again: nothing re-signed


async def work_through(
    stack: OwnStack,
    proxy: FaultyRpcProxy,
    transfers: list[QueuedTransfer],
    *,
    stuck_seconds: float | None = None,
    fees_at_the_cap: bool = False,
) -> dict[str, list[str]]:
    """An in-process worker talking to the chain through ``proxy`` runs until no job is open.
    With ``fees_at_the_cap`` the network's price is the configured cap all along, so no bump
    can raise it. Returns each transfer's statuses in the order seen between rounds."""
    worker = RelayerWorker(stack.services, name="test-relayer")
    await worker.rpc.close()
    worker.rpc = JsonRpc(proxy.url)
    if stuck_seconds is not None:
        worker.settings = worker.settings.model_copy(
            update={"relayer_stuck_seconds": stuck_seconds}
        )
    if fees_at_the_cap:
        max_fee, tip = await worker.read_gas_price()
        capped = (2 * max_fee, tip)  # well above the base fee: mined when it is sent
        worker.settings = worker.settings.model_copy(
            update={"relayer_max_fee_per_gas_wei": capped[0]}
        )

        async def at_the_cap() -> tuple[int, int]:
            return capped

        worker.read_gas_price = at_the_cap  # type: ignore[method-assign]
    seen: dict[str, list[str]] = {t.job_id: [] for t in transfers}
    deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS
    try:
        while True:
            async with stack.services.db.session() as session:
                rows = await session.execute(
                    select(RelayTransaction.id, RelayTransaction.status).where(
                        RelayTransaction.id.in_(list(seen))
                    )
                )
                for job_id, status in rows.all():
                    if seen[job_id][-1:] != [status]:
                        seen[job_id].append(status)
            counts = await status_counts(stack.services.db)
            if not counts.keys() & set(PIPELINE_STATUSES):
                return seen
            assert time.monotonic() < deadline, f"jobs now: {dict(counts)}; seen: {seen}"
            if not await worker.tick():
                await asyncio.sleep(POLL_SECONDS)
    finally:
        await worker.rpc.close()


async def assert_confirmed_once_without_filler(
    stack: OwnStack,
    chain: ChainReader,
    transfers: list[QueuedTransfer],
    seen: dict[str, list[str]],
) -> None:
    async with stack.services.db.session() as session:
        jobs = list((await session.execute(select(RelayTransaction))).scalars())
        key_ids = {job.relayer_key_id for job in jobs}
        keys = [await session.get_one(RelayerKey, key_id) for key_id in key_ids]
    assert [job.kind for job in jobs if job.kind == JobKind.NONCE_FILL] == []
    assert {job.id: job.status for job in jobs} == {t.job_id: "CONFIRMED" for t in transfers}
    for transfer in transfers:
        assert "FAILED" not in seen[transfer.job_id], seen
        assert seen[transfer.job_id][-1] == "CONFIRMED"
        # Executed exactly once: the fresh recipient holds its one amount.
        assert chain.ovpp_of(transfer.recipient) == transfer.amount
    for key in keys:
        nonces = sorted(job.relayer_nonce for job in jobs if job.relayer_key_id == key.id)
        assert nonces == list(range(key.next_nonce))
        assert chain.web3.eth.get_transaction_count(key.address) == key.next_nonce
