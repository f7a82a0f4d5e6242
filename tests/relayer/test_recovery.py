"""The relayer survives being killed: every queued transfer lands on chain exactly once and the
relayer keys' nonces have no gap, whatever moment the worker process dies at.

The workers are real ``ovpp-wallet relayer`` processes killed with SIGKILL. Each test has its
own database (the session's in-process relayer must not touch these jobs), its own relayer
keys and fee treasury, and its own app to queue transfers through GraphQL; the chain and its
contracts are the session's anvil. A proxy between the worker and anvil holds broadcasts so
the kills land inside the crash windows that matter (BRIEF §5):

1. transactions signed and stored, sent to no node;
2. transactions sent and mined, the database still saying SIGNED, others already CONFIRMED.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from sqlalchemy import func, select, update

from api.container import Services
from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.deploy import Deployer
from chain.erc20 import erc20_transfer_data
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from chain.rpc import JsonRpc, RpcError
from core.db import Database
from devsupport.anvil import LocalChain
from relayer.keys import authorize_keys
from relayer.models import (
    PIPELINE_STATUSES,
    JobKind,
    RelayAttempt,
    RelayerKey,
    RelayStatus,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
)
from relayer.rpc_errors import SendOutcome, classify
from relayer.worker import RelayerWorker
from tests.support.issuer import TestIssuer
from tests.support.own_stack import (
    OVPP,
    PHASE_TIMEOUT_SECONDS,
    POLL_SECONDS,
    RELAYER_KEYS,
    SENDER_OVPP,
    SENDER_USD,
    OwnStack,
    QueuedTransfer,
    Sender,
    new_sender,
    queue_transfer,
    queue_transfers,
    senders_on_every_key,
    sponsor_the_stacks_utility,
    status_counts,
    tick_until,
    transaction_as_shown,
    two_senders_on_one_key,
    work_until_final,
)
from tests.support.relayer_process import RelayerProcesses
from tests.support.rpc_proxy import FaultyRpcProxy, Hold
from tests.support.wallets import ChainReader
from wallet.keys import sealed_key_of as sealed_wallet_key
from wallet.keys import unlocked_account
from wallet.models import Wallet

# ------------------------------------------------------------------------------ the stack


@pytest.fixture
def rpc_proxy(anvil: LocalChain) -> Iterator[FaultyRpcProxy]:
    with FaultyRpcProxy(upstream=anvil.rpc_url) as proxy:
        yield proxy


# ------------------------------------------------------------------------- the acceptance


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_killed_relayer_restarts_and_sends_every_transfer_exactly_once(
    own_stack: OwnStack,
    rpc_proxy: FaultyRpcProxy,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """With 100 transfers queued, the worker is SIGKILLed twice and started again: all 100
    confirm, each exactly once, with no gap in the relayer's nonces."""
    senders = await senders_on_every_key(own_stack, test_issuer, deployer, contracts, count=8)
    transfers = await queue_transfers(own_stack, senders, count=100)
    db = own_stack.services.db

    with own_stack.workers(rpc_url=rpc_proxy.url) as workers:
        # 1. Killed with transactions signed and stored, but sent to no node.
        rpc_proxy.hold_broadcasts(Hold.HOLD_BEFORE_SENDING)
        first = workers.start("first")
        await wait_until(
            lambda counts: counts[RelayStatus.SIGNED] > 0 and rpc_proxy.held > 0,
            db=db,
            workers=workers,
            what="a signed transaction held on its way to the node",
        )
        first.kill()
        rpc_proxy.release_held()
        assert await relayer_nonces_on_chain(own_stack) == [0] * RELAYER_KEYS

        # 2. Killed with some transfers confirmed and a broadcast mined whose answer never
        # came back: on chain, but SIGNED in the database.
        rpc_proxy.hold_broadcasts(Hold.HOLD_ANSWER, passing=1)
        second = workers.start("second")
        await wait_until(
            lambda counts: counts[RelayStatus.CONFIRMED] > 0 and rpc_proxy.held > 0,
            db=db,
            workers=workers,
            what="a confirmed transfer, and a mined broadcast whose answer is held",
        )
        second.kill()
        rpc_proxy.release_held()
        counts = await status_counts(db)
        assert 0 < counts[RelayStatus.CONFIRMED] < len(transfers), counts
        assert await signed_but_already_mined(own_stack, within_seconds=10), (
            "the second kill missed its window"
        )

        # 3. Started again with nothing in the way: everything confirms.
        third = workers.start("third")
        await wait_until(
            lambda counts: (
                counts[RelayStatus.CONFIRMED] + counts[RelayStatus.FAILED] == len(transfers)
            ),
            db=db,
            workers=workers,
            what="every transfer final",
        )
        assert third.stop() == 0, workers.logs()
        assert workers.errors_logged() == []

    await assert_each_sent_exactly_once(own_stack, deployer, contracts, senders, transfers)


@pytest.mark.parametrize("own_stack", ["postgresql"], indirect=True)
async def test_two_workers_on_one_postgresql_never_send_a_transaction_twice(
    own_stack: OwnStack,
    anvil: LocalChain,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Two worker processes race for the same keys while transfers are being queued: the
    key's row lock lets one sign at a time, and both may broadcast the same stored bytes."""
    senders = await senders_on_every_key(own_stack, test_issuer, deployer, contracts, count=6)
    db = own_stack.services.db

    with own_stack.workers(rpc_url=anvil.rpc_url) as workers:
        both = [workers.start("one"), workers.start("two")]
        for worker in both:  # both really running side by side before any work is queued
            await asyncio.to_thread(worker.wait_until_running)
        transfers = await queue_transfers(own_stack, senders, count=60)
        await wait_until(
            lambda counts: (
                counts[RelayStatus.CONFIRMED] + counts[RelayStatus.FAILED] == len(transfers)
            ),
            db=db,
            workers=workers,
            what="every transfer final",
        )
        assert [worker.stop() for worker in both] == [0, 0], workers.logs()
        assert workers.errors_logged() == []

    await assert_each_sent_exactly_once(own_stack, deployer, contracts, senders, transfers)


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_transaction_the_node_rejects_fails_and_its_nonce_is_filled(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The node refuses one job's transaction outright (here: a gas limit above the block's).
    The job fails and costs its customer nothing; a zero-value transaction takes its relayer
    nonce, so the next job on the same key (one nonce up) is not stuck behind a gap; and the
    customer's wallet can send again."""
    chain = ChainReader(deployer, contracts)
    doomed_sender, next_sender = await two_senders_on_one_key(
        own_stack, test_issuer, deployer, contracts
    )
    key_id = doomed_sender.relayer_key_id
    # Queued one after the other, so they are signed in this order, with consecutive nonces.
    [doomed] = await queue_transfers(own_stack, [doomed_sender], count=1)
    [following] = await queue_transfers(own_stack, [next_sender], count=1)
    db = own_stack.services.db
    async with db.session() as session:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == doomed.job_id)
            .values(gas_limit=100_000_000)  # anvil: "intrinsic gas too high"
        )

    await work_until_final(own_stack)

    async with db.session() as session:
        jobs = {
            job.id: job
            for job in (
                await session.execute(
                    select(RelayTransaction).where(RelayTransaction.relayer_key_id == key_id)
                )
            ).scalars()
        }
        key = await session.get_one(RelayerKey, key_id)
    failed = jobs.pop(doomed.job_id)
    assert failed.status == RelayStatus.FAILED
    assert failed.error is not None and "rejected by the node" in failed.error
    assert "gas" in failed.error
    [filler] = [job for job in jobs.values() if job.kind == JobKind.NONCE_FILL]
    assert jobs[following.job_id].status == RelayStatus.CONFIRMED
    assert filler.status == RelayStatus.CONFIRMED
    # The filler is a zero-value transaction from the key to itself, mined with the nonce the
    # rejected job had; the following job went through one nonce up.
    assert filler.relayer_nonce == jobs[following.job_id].relayer_nonce - 1
    mined = chain.web3.eth.get_transaction(filler.tx_hash)
    assert (mined["from"], mined["to"], mined["value"], mined["nonce"]) == (
        key.address,
        key.address,
        0,
        filler.relayer_nonce,
    )
    # No gap: the key's nonces in the database are 0..n-1, as on chain.
    nonces = sorted(job.relayer_nonce for job in jobs.values())
    assert nonces == list(range(key.next_nonce))
    assert chain.web3.eth.get_transaction_count(key.address) == key.next_nonce
    # The rejected transfer moved nothing and charged no fee; the other one landed.
    assert chain.ovpp_of(doomed.recipient) == 0
    assert chain.ovpp_of(doomed_sender.customer.address) == SENDER_OVPP
    assert chain.usd_of(doomed_sender.customer.address) == SENDER_USD
    assert chain.ovpp_of(following.recipient) == following.amount

    # The wallet's forwarder nonce was given back: its next transfer confirms.
    [again] = await queue_transfers(own_stack, [doomed_sender], count=1)
    await work_until_final(own_stack)
    assert chain.ovpp_of(again.recipient) == again.amount


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_re_priced_transaction_the_node_refuses_fails_instead_of_blocking_its_key(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The node refuses a job's first transaction as underpriced and the worker re-signs it
    (a second attempt, never accepted); then the node refuses that one outright. No copy was
    ever in the pool, so the job fails and a zero-value transaction takes its nonce: the next
    job on the key confirms behind it, instead of both waiting for a receipt that cannot
    come."""
    chain = ChainReader(deployer, contracts)
    refused_sender, next_sender = await two_senders_on_one_key(
        own_stack, test_issuer, deployer, contracts
    )
    [refused] = await queue_transfers(own_stack, [refused_sender], count=1)
    db = own_stack.services.db
    worker = BaseFeeRisesOnce(own_stack.services, name="test-relayer")
    worker.rise_before_next_signing = True
    try:
        await worker.tick()  # signed below the base fee, refused, re-signed at today's fee
        async with db.session() as session:
            job = await session.get_one(RelayTransaction, refused.job_id)
            assert (job.status, job.attempts, job.submitted_at) == (RelayStatus.SIGNED, 2, None)
            job.raw_transaction = b"\x02not a transaction"  # the node refuses it outright
        [following] = await queue_transfers(own_stack, [next_sender], count=1)
        await tick_until(worker, db, lambda counts: not counts.keys() & set(PIPELINE_STATUSES))
    finally:
        await worker.rpc.close()

    async with db.session() as session:
        failed = await session.get_one(RelayTransaction, refused.job_id)
        after = await session.get_one(RelayTransaction, following.job_id)
        [filler] = (
            await session.execute(
                select(RelayTransaction).where(
                    RelayTransaction.idempotency_key == f"nonce-fill:{refused.job_id}"
                )
            )
        ).scalars()
        key = await session.get_one(RelayerKey, refused_sender.relayer_key_id)
    assert failed.status == RelayStatus.FAILED and "rejected by the node" in (failed.error or "")
    assert (filler.status, after.status) == (RelayStatus.CONFIRMED, RelayStatus.CONFIRMED)
    assert after.relayer_nonce == filler.relayer_nonce + 1
    assert chain.web3.eth.get_transaction_count(key.address) == key.next_nonce
    assert chain.ovpp_of(refused.recipient) == 0
    assert chain.ovpp_of(following.recipient) == following.amount


@pytest.mark.parametrize("own_stack", ["sqlite"], indirect=True)
async def test_a_key_the_forwarder_refuses_sends_nothing_until_it_is_authorized(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every transaction of a relayer key the forwarder does not accept would revert and
    burn gas: the worker signs nothing with it, says so once, and carries on with the other
    keys; once the key is authorized (``ovpp-wallet relayer-authorize``) its jobs go out."""
    # One sender per key: with every sender queued, each key has transfers (more senders,
    # and the first six could all share a key, as one run in ~30 found).
    one_per_key: dict[str, Sender] = {}
    for sender in await senders_on_every_key(own_stack, test_issuer, deployer, contracts, count=2):
        one_per_key.setdefault(sender.relayer_key_id, sender)
    senders = list(one_per_key.values())
    db = own_stack.services.db
    blocked_id = senders[0].relayer_key_id
    async with db.session() as session:
        blocked = await session.get_one(RelayerKey, blocked_id)
    forwarder = deployer.web3.eth.contract(
        address=contracts.forwarder, abi=artifact("OVPPForwarder").abi
    )
    deployer.web3.eth.wait_for_transaction_receipt(
        forwarder.functions.setRelayer(blocked.address, False).transact(
            {"from": deployer.account.address}
        )
    )
    transfers = await queue_transfers(own_stack, senders, count=6)
    waiting = {t.job_id for t in transfers if t.sender.relayer_key_id == blocked_id}
    assert waiting and len(waiting) < len(transfers)

    worker = RelayerWorker(own_stack.services, name="test-relayer")
    try:
        await tick_until(
            worker,
            db,
            lambda counts: counts[RelayStatus.CONFIRMED] >= len(transfers) - len(waiting),
        )
        for _ in range(3):  # more rounds change nothing for the refused key
            await worker.tick()
    finally:
        await worker.rpc.close()
    assert worker.unauthorized_keys == {blocked_id}
    async with db.session() as session:
        statuses = dict(
            (
                await session.execute(
                    select(RelayTransaction.id, RelayTransaction.status).where(
                        RelayTransaction.id.in_(waiting)
                    )
                )
            ).all()
        )
    assert set(statuses.values()) == {RelayStatus.QUEUED}
    assert deployer.web3.eth.get_transaction_count(blocked.address) == 0
    refusals = [r.message for r in caplog.records if "not authorized" in r.message]
    assert len(refusals) == 1 and blocked.address in refusals[0]

    authorized = await authorize_keys(
        own_stack.services, [blocked.address], owner_key=ANVIL_DEV_PRIVATE_KEY
    )
    assert authorized == [blocked.address]
    await work_until_final(own_stack)
    await assert_each_sent_exactly_once(own_stack, deployer, contracts, senders, transfers)


@pytest.mark.parametrize("payment", ["token fee", "sponsored"])
@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_transfer_that_reverts_on_its_own_fails_alone_and_the_next_ones_confirm(
    own_stack: OwnStack,
    payment: str,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A wallet's transfers A, B and C are queued (consecutive forwarder nonces); then the
    wallet spends most of its OVPP on chain by itself, so A can no longer be paid. A reverts,
    which leaves the forwarder's nonce at A's, so B's and C's requests revert too. B and C are
    not the customer's fault: they go back to the queue, are signed again from the forwarder's
    nonce and confirm, each exactly once; the customer never sees them FAILED, and nobody pays
    a fee or a sponsor charge for their reverted transactions."""
    chain = ChainReader(deployer, contracts)
    sponsor_id = await sponsor_the_stacks_utility(own_stack) if payment == "sponsored" else None
    plan = await queue_a_doomed_transfer_and_two_after_it(
        own_stack, test_issuer, deployer, contracts
    )
    doomed, following = plan.doomed, plan.following

    seen = await work_until_final_watching(own_stack, [doomed.job_id, *plan.following_ids])

    # What the customer sees: A failed with its reason, B and C confirmed and never failed.
    shown = {t.job_id: await transaction_as_shown(own_stack, t) for t in plan.transfers}
    assert shown[doomed.job_id]["status"] == "FAILED"
    assert shown[doomed.job_id]["error"] == "the transaction reverted on chain"
    for transfer in following:
        assert shown[transfer.job_id]["status"] == "CONFIRMED", shown
        assert shown[transfer.job_id]["error"] is None
        assert RelayStatus.FAILED not in seen[transfer.job_id], seen
        assert seen[transfer.job_id][-1] == RelayStatus.CONFIRMED

    # Each executed exactly once, A never: the balances and the wallet's forwarder nonce.
    assert chain.ovpp_of(doomed.recipient) == 0
    assert {t.recipient: chain.ovpp_of(t.recipient) for t in following} == {
        t.recipient: t.amount for t in following
    }
    sender_address = plan.sender.customer.address
    assert chain.ovpp_of(sender_address) == (
        SENDER_OVPP - plan.spent_on_chain - sum(t.amount for t in following)
    )
    sent = await sent_for(own_stack, plan)
    # B's and C's requests, and no other, used the wallet's forwarder nonces (two each with
    # the fee transfer, one each when sponsored).
    executed_requests = sum(len(sent.jobs[t.job_id].forward_requests) for t in following)
    assert executed_requests == (2 if sponsor_id else 4)
    forwarder = deployer.web3.eth.contract(
        address=contracts.forwarder, abi=artifact("OVPPForwarder").abi
    )
    assert forwarder.functions.nonces(sender_address).call() == executed_requests
    async with own_stack.services.db.session() as session:
        wallet = await session.get_one(Wallet, plan.sender.wallet_id)
    assert wallet.next_forwarder_nonce == executed_requests

    assert_requeued_after_their_revert(plan, sent)
    await assert_relayer_nonces_without_gap(own_stack, plan.sender.relayer_key_id, sent)

    # Fees and sponsor charges: only what executed is paid for.
    if sponsor_id is None:
        fees = {t.job_id: sent.jobs[t.job_id].fee_amount for t in plan.transfers}
        assert all(fee > 0 for fee in fees.values())
        paid = sum(fees[t.job_id] for t in following)
        assert chain.usd_of(sender_address) == SENDER_USD - paid
        assert own_stack.settings.treasury_address is not None
        assert chain.usd_of(own_stack.settings.treasury_address) == paid
    else:
        assert chain.usd_of(sender_address) == SENDER_USD
        async with own_stack.services.db.session() as session:
            charges = {
                charge.relay_transaction_id: charge
                for charge in (await session.execute(select(SponsorCharge))).scalars()
            }
            sponsor = await session.get_one(Sponsor, sponsor_id)
        assert set(charges) == {t.job_id for t in plan.transfers}
        for transfer in plan.transfers:
            # Each job is charged what its last transaction cost: A its revert (its own
            # failure), B and C their confirmed transaction, not their reverted one.
            receipt = sent.receipts[sent.jobs[transfer.job_id].tx_hash]
            charge = charges[transfer.job_id]
            assert charge.settled is True
            assert charge.amount_wei == (
                int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)
            )
        assert sponsor.spent_wei == sum(charge.amount_wei for charge in charges.values())


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_requeued_job_is_judged_by_its_new_transaction_not_its_reverted_one(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """B and C revert behind A and go back to the queue; then the base fee rises under their
    second signing, so each is re-signed with a higher fee (a second attempt at its new
    relayer nonce). The receipt of the reverted first attempt is never taken for the job: B
    and C confirm with the hash of the transaction that executed them."""
    plan = await queue_a_doomed_transfer_and_two_after_it(
        own_stack, test_issuer, deployer, contracts
    )
    db = own_stack.services.db
    worker = BaseFeeRisesOnce(own_stack.services, name="test-relayer")
    try:
        # Until A failed and B and C are back in the queue: their receipts may come a round
        # after A's (a loaded node mines a batch one by one), and the wallet stays held (none
        # re-signed) while any of them is in flight.
        await tick_until(
            worker,
            db,
            lambda counts: (
                counts[RelayStatus.FAILED] > 0
                and not counts.keys()
                & {RelayStatus.SIGNED, RelayStatus.SUBMITTED, RelayStatus.MINED}
            ),
        )
        async with db.session() as session:
            requeued = {
                job.id: job
                for job in (
                    await session.execute(
                        select(RelayTransaction).where(RelayTransaction.id.in_(plan.following_ids))
                    )
                ).scalars()
            }
        assert {job.status for job in requeued.values()} == {RelayStatus.QUEUED}
        assert {job.tx_hash for job in requeued.values()} == {None}
        worker.rise_before_next_signing = True
        await tick_until(worker, db, lambda counts: not counts.keys() & set(PIPELINE_STATUSES))
    finally:
        await worker.rpc.close()
    assert not worker.rise_before_next_signing, "the fee never rose"

    for transfer in plan.following:
        assert (await transaction_as_shown(own_stack, transfer))["status"] == "CONFIRMED"
    sent = await sent_for(own_stack, plan)
    assert_requeued_after_their_revert(plan, sent, underpriced_attempts=1)
    await assert_relayer_nonces_without_gap(own_stack, plan.sender.relayer_key_id, sent)


class BaseFeeRisesOnce(RelayerWorker):
    """A worker whose next signing round, once asked, prices below the chain's base fee, as
    when the base fee rises between the fee read and the broadcast: the node refuses those
    transactions as underpriced and the worker re-signs them at a higher fee."""

    def __init__(self, services: Services, *, name: str) -> None:
        super().__init__(services, name=name)
        self.rise_before_next_signing = False

    async def read_gas_price(self) -> tuple[int, int]:
        if self.rise_before_next_signing:
            self.rise_before_next_signing = False
            return 0, 0
        return await super().read_gas_price()


@dataclass(frozen=True)
class DoomedFirst:
    """One wallet's queued transfers, in forwarder-nonce order: ``doomed`` can no longer be
    paid on chain, the two ``following`` can."""

    sender: Sender
    doomed: QueuedTransfer
    following: list[QueuedTransfer]
    spent_on_chain: int

    @property
    def transfers(self) -> list[QueuedTransfer]:
        return [self.doomed, *self.following]

    @property
    def following_ids(self) -> list[str]:
        return [t.job_id for t in self.following]


async def queue_a_doomed_transfer_and_two_after_it(
    stack: OwnStack, issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> DoomedFirst:
    """Queued before any worker runs, so the three are signed in one round, in order."""
    sender = await new_sender(stack, issuer, deployer, contracts)
    doomed = await queue_transfer(stack, sender, Account.create().address, 4_000 * OVPP)
    following = [
        await queue_transfer(stack, sender, Account.create().address, amount)
        for amount in (OVPP // 10, OVPP // 5)
    ]
    spent_on_chain = 4_500 * OVPP
    await spend_from_the_wallet_directly(
        stack, deployer, contracts, sender, to=Account.create().address, amount=spent_on_chain
    )
    return DoomedFirst(sender, doomed, following, spent_on_chain)


async def spend_from_the_wallet_directly(
    stack: OwnStack,
    deployer: Deployer,
    contracts: AddressBook,
    sender: Sender,
    *,
    to: str,
    amount: int,
) -> None:
    """A plain ERC-20 transfer of OVPP signed with the wallet's own key, outside the relayer,
    with native gas lent to the wallet for it and taken back after."""
    web3 = deployer.web3
    async with stack.services.db.session() as session:
        wallet = await session.get_one(Wallet, sender.wallet_id)
    web3.provider.make_request("anvil_setBalance", [wallet.address, hex(10**17)])
    try:
        block = web3.eth.get_block("latest")
        with unlocked_account(sealed_wallet_key(wallet), keyring=stack.services.keyring) as owner:
            signed = owner.sign_transaction(
                {
                    "to": contracts.ovpp_token,
                    "value": 0,
                    "data": erc20_transfer_data(to, amount),
                    "gas": 100_000,
                    "maxFeePerGas": int(block["baseFeePerGas"]) * 2 + 10**9,
                    "maxPriorityFeePerGas": 10**9,
                    "nonce": web3.eth.get_transaction_count(wallet.address),
                    "chainId": web3.eth.chain_id,
                }
            )
        tx_hash = web3.eth.send_raw_transaction(signed.raw_transaction)
        assert web3.eth.wait_for_transaction_receipt(tx_hash)["status"] == 1
    finally:
        web3.provider.make_request("anvil_setBalance", [wallet.address, "0x0"])


@dataclass(frozen=True)
class SentForPlan:
    """The plan's jobs, every transaction ever signed for each (its attempts, by relayer
    nonce then age), and the chain's receipt and transaction of each one that was mined."""

    jobs: dict[str, RelayTransaction]
    attempts: dict[str, list[RelayAttempt]]
    receipts: dict[str, dict]
    transactions: dict[str, dict]


async def sent_for(stack: OwnStack, plan: DoomedFirst) -> SentForPlan:
    async with stack.services.db.session() as session:
        jobs = {
            job.id: job
            for job in (
                await session.execute(
                    select(RelayTransaction).where(
                        RelayTransaction.id.in_([t.job_id for t in plan.transfers])
                    )
                )
            ).scalars()
        }
        attempts: dict[str, list[RelayAttempt]] = {}
        for attempt in (
            await session.execute(
                select(RelayAttempt)
                .where(RelayAttempt.relay_transaction_id.in_(list(jobs)))
                .order_by(RelayAttempt.relayer_nonce, RelayAttempt.created_at)
            )
        ).scalars():
            attempts.setdefault(attempt.relay_transaction_id, []).append(attempt)
    hashes = [attempt.tx_hash for of_job in attempts.values() for attempt in of_job]
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    try:
        found = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        receipts = {
            h: receipt
            for h, receipt in zip(hashes, found, strict=True)
            if isinstance(receipt, dict)
        }
        mined = await rpc.batch([("eth_getTransactionByHash", [h]) for h in receipts])
    finally:
        await rpc.close()
    return SentForPlan(
        jobs=jobs,
        attempts=attempts,
        receipts=receipts,
        transactions=dict(zip(receipts, mined, strict=True)),
    )


def assert_requeued_after_their_revert(
    plan: DoomedFirst, sent: SentForPlan, *, underpriced_attempts: int = 0
) -> None:
    """A's one transaction reverted. B and C each have a reverted first transaction at an
    earlier relayer nonce, then (after ``underpriced_attempts`` never mined) the one that
    executed them, at the nonce they hold now: exactly one success each."""
    doomed = sent.jobs[plan.doomed.job_id]
    [only] = sent.attempts[doomed.id]
    assert (only.tx_hash, only.relayer_nonce) == (doomed.tx_hash, doomed.relayer_nonce)
    assert int(sent.receipts[only.tx_hash]["status"], 16) == 0
    for transfer in plan.following:
        job = sent.jobs[transfer.job_id]
        first, *unmined, last = sent.attempts[job.id]
        assert int(sent.receipts[first.tx_hash]["status"], 16) == 0
        assert first.relayer_nonce is not None and job.relayer_nonce is not None
        assert first.relayer_nonce < job.relayer_nonce
        assert len(unmined) == underpriced_attempts
        assert all(a.tx_hash not in sent.receipts for a in unmined)
        assert {a.relayer_nonce for a in (*unmined, last)} == {job.relayer_nonce}
        assert last.tx_hash == job.tx_hash
        assert int(sent.receipts[last.tx_hash]["status"], 16) == 1
        assert int(sent.receipts[last.tx_hash]["blockNumber"], 16) == job.block_number


async def assert_relayer_nonces_without_gap(
    stack: OwnStack, key_id: str, sent: SentForPlan
) -> None:
    """Every transaction the key has on chain is one of the attempts, mined at the relayer
    nonce recorded with it; its nonces are 0..n-1 and nothing waits in the pool."""
    async with stack.services.db.session() as session:
        key = await session.get_one(RelayerKey, key_id)
    attempt_nonces = {
        attempt.tx_hash: attempt.relayer_nonce
        for of_job in sent.attempts.values()
        for attempt in of_job
    }
    nonces = []
    for tx_hash, transaction in sent.transactions.items():
        assert to_checksum_address(transaction["from"]) == key.address
        assert int(transaction["nonce"], 16) == attempt_nonces[tx_hash]
        nonces.append(attempt_nonces[tx_hash])
    assert sorted(nonces) == list(range(key.next_nonce))
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    try:
        latest, pending = await rpc.batch(
            [("eth_getTransactionCount", [key.address, tag]) for tag in ("latest", "pending")]
        )
    finally:
        await rpc.close()
    assert (int(latest, 16), int(pending, 16)) == (key.next_nonce, key.next_nonce)


# -------------------------------------------------------------- customers and transfers


# ------------------------------------------------------------------------------ waiting


async def work_until_final_watching(stack: OwnStack, job_ids: list[str]) -> dict[str, list[str]]:
    """Runs an in-process worker's rounds until no job is open. Returns each watched job's
    statuses in the order seen between rounds (what a customer polling it could see)."""
    db = stack.services.db
    seen: dict[str, list[str]] = {job_id: [] for job_id in job_ids}
    worker = RelayerWorker(stack.services, name="test-relayer")
    deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS
    try:
        while True:
            async with db.session() as session:
                now = await session.execute(
                    select(RelayTransaction.id, RelayTransaction.status).where(
                        RelayTransaction.id.in_(job_ids)
                    )
                )
                for job_id, status in now.all():
                    if seen[job_id][-1:] != [status]:
                        seen[job_id].append(status)
            counts = await status_counts(db)
            if not counts.keys() & set(PIPELINE_STATUSES):
                return seen
            assert time.monotonic() < deadline, f"jobs now: {dict(counts)}; seen: {seen}"
            if not await worker.tick():
                await asyncio.sleep(POLL_SECONDS)
    finally:
        await worker.rpc.close()


async def wait_until(
    condition: Callable[[Counter[str]], bool],
    *,
    db: Database,
    workers: RelayerProcesses,
    what: str,
    within_seconds: float = PHASE_TIMEOUT_SECONDS,
) -> None:
    """Poll the jobs' statuses until ``condition`` holds; fail with the workers' logs if it
    does not in time or if a worker dies on its own."""
    deadline = time.monotonic() + within_seconds
    while True:
        counts = await status_counts(db)
        if condition(counts):
            return
        if any(w.process.poll() not in (None, -signal.SIGKILL) for w in workers.started):
            pytest.fail(f"a relayer exited on its own while waiting for {what}\n{workers.logs()}")
        if time.monotonic() > deadline:
            pytest.fail(
                f"no {what} within {within_seconds:.0f} s: {dict(counts)}\n{workers.logs()}"
            )
        await asyncio.sleep(POLL_SECONDS)


# --------------------------------------------------------------------------- the checks


async def relayer_nonces_on_chain(stack: OwnStack) -> list[int]:
    async with stack.services.db.session() as session:
        keys = list((await session.execute(select(RelayerKey).order_by(RelayerKey.slot))).scalars())
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    try:
        results = await rpc.batch(
            [("eth_getTransactionCount", [key.address, "latest"]) for key in keys]
        )
    finally:
        await rpc.close()
    return [int(result, 16) for result in results]


async def signed_but_already_mined(stack: OwnStack, *, within_seconds: float = 0) -> int:
    """How many jobs the database calls SIGNED although their transaction is mined; with
    ``within_seconds``, asked again until some are (anvil answers a send before its automined
    block is in, so a broadcast the node has answered may not be mined yet)."""
    async with stack.services.db.session() as session:
        hashes = list(
            (
                await session.execute(
                    select(RelayTransaction.tx_hash).where(
                        RelayTransaction.status == RelayStatus.SIGNED
                    )
                )
            ).scalars()
        )
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    deadline = time.monotonic() + within_seconds
    try:
        while True:
            receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            mined = sum(1 for receipt in receipts if isinstance(receipt, dict))
            if mined or time.monotonic() >= deadline:
                return mined
            await asyncio.sleep(0.1)
    finally:
        await rpc.close()


async def until_mined(rpc: JsonRpc, tx_hash: str, *, within_seconds: float = 10) -> None:
    """Until the transaction has a receipt (or ``within_seconds`` have passed)."""
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        (receipt,) = await rpc.batch([("eth_getTransactionReceipt", [tx_hash])])
        if isinstance(receipt, dict):
            return
        await asyncio.sleep(0.05)


async def assert_each_sent_exactly_once(
    stack: OwnStack,
    deployer: Deployer,
    contracts: AddressBook,
    senders: list[Sender],
    transfers: list[QueuedTransfer],
) -> None:
    db = stack.services.db
    async with db.session() as session:
        jobs = {
            job.id: job
            for job in (
                await session.execute(
                    select(RelayTransaction).where(
                        RelayTransaction.id.in_([t.job_id for t in transfers])
                    )
                )
            ).scalars()
        }
        attempts: dict[str, list[str]] = {}
        for job_id, tx_hash in (
            await session.execute(select(RelayAttempt.relay_transaction_id, RelayAttempt.tx_hash))
        ).all():
            attempts.setdefault(job_id, []).append(tx_hash)
        keys = {key.id: key for key in (await session.execute(select(RelayerKey))).scalars()}
        job_count = (
            await session.execute(select(func.count()).select_from(RelayTransaction))
        ).scalar_one()
    assert job_count == len(transfers) == len(jobs)
    not_confirmed = {j.id: (j.status, j.error) for j in jobs.values() if j.status != "CONFIRMED"}
    assert not_confirmed == {}

    # Exactly one mined transaction per job among every raw transaction ever signed for it,
    # successful, sent by the job's key with the job's nonce.
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    try:
        hashes = [(job_id, h) for job_id in jobs for h in attempts.get(job_id, [])]
        receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for _, h in hashes])
        mined: dict[str, list[dict]] = {job_id: [] for job_id in jobs}
        for (job_id, _), receipt in zip(hashes, receipts, strict=True):
            if isinstance(receipt, dict):
                mined[job_id].append(receipt)
        assert {job_id: len(found) for job_id, found in mined.items() if len(found) != 1} == {}
        sent = await rpc.batch(
            [
                ("eth_getTransactionByHash", [found[0]["transactionHash"]])
                for found in mined.values()
            ]
        )
        for (job_id, (receipt,)), transaction in zip(mined.items(), sent, strict=True):
            job = jobs[job_id]
            assert receipt["transactionHash"] == job.tx_hash
            assert int(receipt["status"], 16) == 1, job_id
            assert to_checksum_address(receipt["to"]) == contracts.forwarder
            assert to_checksum_address(transaction["from"]) == keys[job.relayer_key_id].address
            assert int(transaction["nonce"], 16) == job.relayer_nonce

        # No gap, nothing extra: a key's nonces are exactly 0..n-1 over its n jobs, and the
        # chain has seen exactly n transactions from it (no funding or filler of its own).
        counts = await rpc.batch(
            [
                (method, [key.address, tag])
                for key in keys.values()
                for method, tag in (
                    ("eth_getTransactionCount", "latest"),
                    ("eth_getTransactionCount", "pending"),
                )
            ]
        )
    finally:
        await rpc.close()
    for position, key in enumerate(keys.values()):
        nonces = sorted(j.relayer_nonce for j in jobs.values() if j.relayer_key_id == key.id)
        latest, pending = (int(c, 16) for c in counts[2 * position : 2 * position + 2])
        assert nonces == list(range(len(nonces))), (key.slot, nonces)
        assert (latest, pending, key.next_nonce) == (len(nonces),) * 3, key.slot
    assert all(any(j.relayer_key_id == key_id for j in jobs.values()) for key_id in keys)

    # Value moved exactly once: each fresh recipient holds its one amount; each sender paid
    # its amounts and fees once; the fresh treasury holds the fees once.
    chain = ChainReader(deployer, contracts)
    assert {t.recipient: chain.ovpp_of(t.recipient) for t in transfers} == {
        t.recipient: t.amount for t in transfers
    }
    fees = {t.job_id: jobs[t.job_id].fee_amount for t in transfers}
    assert all(fee > 0 for fee in fees.values())
    for sender in senders:
        mine = [t for t in transfers if t.sender is sender]
        assert chain.ovpp_of(sender.customer.address) == SENDER_OVPP - sum(t.amount for t in mine)
        assert chain.usd_of(sender.customer.address) == SENDER_USD - sum(
            fees[t.job_id] for t in mine
        )
    assert stack.settings.treasury_address is not None
    assert chain.usd_of(stack.settings.treasury_address) == sum(fees.values())


# ----------------------------------------------------- classifying the node's answers


# PUSH1 0, PUSH1 0, REVERT: contract creation code that reverts with empty data.
REVERTING_INIT_CODE = "0x60006000fd"

GETH_ANSWERS = [
    # go-ethereum's txpool and core errors, as its JSON-RPC returns them (with details).
    ("already known", SendOutcome.ALREADY_KNOWN),
    ("replacement transaction underpriced", SendOutcome.ALREADY_KNOWN),
    ("nonce too low: next nonce 7, tx nonce 5", SendOutcome.NONCE_TOO_LOW),
    (
        "nonce too high: address 0x5B38Da6a701c568545dCfcB03FcB875f56beddC4, tx: 9 state: 7",
        SendOutcome.NONCE_TOO_HIGH,
    ),
    (
        "insufficient funds for gas * price + value: balance 0, tx cost 4200000000000, "
        "overshot 4200000000000",
        SendOutcome.INSUFFICIENT_FUNDS,
    ),
    ("transaction underpriced: gas tip cap 1, minimum needed 1000000000", SendOutcome.UNDERPRICED),
    (
        "max fee per gas less than block base fee: address "
        "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4, maxFeePerGas: 1, baseFee: 7",
        SendOutcome.UNDERPRICED,
    ),
    ("execution reverted", SendOutcome.REJECTED),
    ("execution reverted: ERC20InsufficientBalance", SendOutcome.REJECTED),
    ("exceeds block gas limit", SendOutcome.REJECTED),
    ("intrinsic gas too low", SendOutcome.REJECTED),
]


@pytest.mark.parametrize(("message", "outcome"), GETH_ANSWERS)
def test_geth_answers_are_classified(message: str, outcome: SendOutcome) -> None:
    assert classify(RpcError(code=-32000, message=message)) == outcome


def test_a_transaction_hash_means_accepted() -> None:
    assert classify("0x" + "ab" * 32) == SendOutcome.ACCEPTED


async def test_anvils_real_answers_are_classified(anvil: LocalChain) -> None:
    """Each answer provoked from the session anvil, from throwaway accounts only (balances
    set with ``anvil_setBalance``; pooled leftovers dropped), so nothing else is disturbed.

    anvil 1.7 answers "nonce too low", "Insufficient funds for gas * price + value", "max fee
    per gas less than block base fee", "transaction already imported", "replacement
    transaction underpriced", the permanent "intrinsic gas too high", "intrinsic gas too low",
    "invalid chain id for signer", "max priority fee per gas higher than max fee per gas" and
    "Failed to decode transaction" and, for a reverting call, "execution reverted"; it pools a
    transaction with a nonce gap instead of answering "nonce too high"."""
    rpc = JsonRpc(anvil.rpc_url)
    probe, empty = Account.create(), Account.create()
    pooled: list[str] = []
    try:
        await rpc.call("anvil_setBalance", probe.address, hex(10**18))
        block = await rpc.call("eth_getBlockByNumber", "latest", False)
        base_fee = int(block["baseFeePerGas"], 16)
        assert base_fee > 0

        def signed(
            account: LocalAccount,
            nonce: int,
            *,
            value: int = 0,
            max_fee: int | None = None,
            **overrides: int,
        ) -> str:
            fee = base_fee * 2 + 10**9 if max_fee is None else max_fee
            transaction = {
                "to": "0x000000000000000000000000000000000000dEaD",
                "value": value,
                "gas": 21_000,
                "maxFeePerGas": fee,
                "maxPriorityFeePerGas": min(10**9, fee),
                "nonce": nonce,
                "chainId": 31337,
                "type": 2,
                **overrides,
            }
            return "0x" + bytes(account.sign_transaction(transaction).raw_transaction).hex()

        async def send(raw: str) -> object:
            (result,) = await rpc.batch([("eth_sendRawTransaction", [raw])])
            return result

        first = signed(probe, 0)
        accepted = await send(first)
        # anvil answers a send before its automined block is in: the answers below are those
        # to a used nonce only once it is (on a loaded machine the pool still held it).
        if isinstance(accepted, str):
            await until_mined(rpc, accepted)
        answers: dict[str, tuple[object, SendOutcome]] = {
            "accepted (automined)": (accepted, SendOutcome.ACCEPTED),
            "the same raw transaction, mined already": (
                await send(first),
                SendOutcome.NONCE_TOO_LOW,
            ),
            "another transaction with a used nonce": (
                await send(signed(probe, 0, value=1)),
                SendOutcome.NONCE_TOO_LOW,
            ),
            "from an account without funds": (
                await send(signed(empty, 0)),
                SendOutcome.INSUFFICIENT_FUNDS,
            ),
            "max fee below the base fee": (
                await send(signed(probe, 1, max_fee=0)),
                SendOutcome.UNDERPRICED,
            ),
            # The permanent refusals (``PERMANENT_ERRORS``): the only answers that fail a job.
            "a gas limit above the block's": (
                await send(signed(probe, 1, gas=100_000_000)),
                SendOutcome.REJECTED,
            ),
            "a gas limit below the intrinsic gas": (
                await send(signed(probe, 1, gas=20_000)),
                SendOutcome.REJECTED,
            ),
            "signed for another chain": (
                await send(signed(probe, 1, chainId=1)),
                SendOutcome.REJECTED,
            ),
            "a tip above the max fee": (
                await send(signed(probe, 1, maxPriorityFeePerGas=base_fee * 2 + 10**9 + 1)),
                SendOutcome.REJECTED,
            ),
            "not a transaction": (
                await send("0x02" + b"not a transaction".hex()),
                SendOutcome.REJECTED,
            ),
        }
        # A nonce gap: anvil pools the transaction (it never answers "nonce too high"), which
        # lets it be sent again and replaced without mining anything.
        future = signed(probe, 5)
        pooled_answer = await send(future)
        assert isinstance(pooled_answer, str), pooled_answer
        pooled.append(pooled_answer)
        answers["the same pooled transaction again"] = (
            await send(future),
            SendOutcome.ALREADY_KNOWN,
        )
        answers["a different transaction for a pooled nonce, same fees"] = (
            await send(signed(probe, 5, value=1)),
            SendOutcome.ALREADY_KNOWN,
        )
        # anvil simulates nothing on send; a reverting call is where it says "execution
        # reverted" (nodes that simulate before pooling answer a send the same way).
        (reverted,) = await rpc.batch(
            [("eth_estimateGas", [{"from": probe.address, "data": REVERTING_INIT_CODE}])]
        )
        answers["a reverting execution"] = (reverted, SendOutcome.REJECTED)
    finally:
        for tx_hash in pooled:
            await rpc.call("anvil_dropTransaction", tx_hash)
        await rpc.close()

    messages = {
        label: answer.message if isinstance(answer, RpcError) else answer
        for label, (answer, _) in answers.items()
    }
    classified = {label: classify(answer) for label, (answer, _) in answers.items()}
    # Re-sending a mined transaction: anvil answers "nonce too low" or, while the hash is still
    # in its recent-transactions cache, "transaction already imported". Both are safe: either
    # way the worker looks the receipt up and finds it mined.
    mined_again = "the same raw transaction, mined already"
    assert classified.pop(mined_again) in (SendOutcome.NONCE_TOO_LOW, SendOutcome.ALREADY_KNOWN), (
        messages
    )
    assert classified == {
        label: outcome for label, (_, outcome) in answers.items() if label != mined_again
    }, messages
