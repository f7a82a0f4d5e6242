"""A sponsored job its sponsor cannot fund never holds its relayer key: when the node refuses
it as underpriced before accepting any copy of it, and the sponsor's funds do not cover a
price the node would take, the job fails with the sponsor's refusal (never charged to its
customer, its reservation settled at 0), a zero-value transaction takes its relayer nonce,
and the key's later jobs, other customers' too, go on. A job a copy of which the node did
accept is not failed: that copy may still be mined.

Each test has its own database and relayer keys (``own_stack``) on the session's anvil,
whose next block's base fee is raised above what the job's reservation covers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.idempotency import NONCE_FILL_KEY_PREFIX
from relayer.models import RelayerKey, RelayStatus, RelayTransaction
from relayer.worker import RelayerWorker
from tests.support.own_stack import (
    SENDER_OVPP,
    SENDER_USD,
    OwnStack,
    queue_transfers,
    sponsor_the_stacks_utility,
    transaction_as_shown,
    work_until_final,
)
from tests.support.sponsored_jobs import (
    BACKENDS,
    GWEI,
    SpikingWorker,
    Stage,
    a_sponsored_job,
    assert_totals_are_the_charge,
    base_fee_raised,
    mining_paused,
    rows_of,
    sent_then_bumped_in_a_spike,
    set_sponsor,
    settled_at_its_real_cost,
    tick_until_status,
    two_senders_sharing_a_key,
    worker_of,
)
from tests.support.wallets import ChainReader

pytestmark = pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)

# Far above anvil's idle base fee (about 1 gwei), and so above the fee a reservation made at
# it covers; twice it plus a tip stays below the relayer's fee cap (500 gwei).
RAISED_BASE_FEE = 40 * GWEI


async def nonce_filler_of(stack: OwnStack, job_id: str) -> RelayTransaction | None:
    async with stack.services.db.session() as session:
        return (
            await session.execute(
                select(RelayTransaction).where(
                    RelayTransaction.idempotency_key == f"{NONCE_FILL_KEY_PREFIX}{job_id}"
                )
            )
        ).scalar_one_or_none()


async def test_a_sponsored_job_its_sponsor_cannot_price_above_the_base_fee_fails_alone(
    stage: Stage,
) -> None:
    """A sponsored transfer, then another customer's unsponsored one, are queued on one
    relayer key; the sponsor has no funds beyond the first's reservation, and the base fee
    rises above what that reservation covers. The node refuses the sponsored transaction as
    underpriced and the sponsor cannot fund a re-price: the job fails, its customer sees the
    sponsor's refusal (BUDGET_EXHAUSTED) as its error and pays nothing, the sponsor's totals
    are back where they were, a zero-value transaction takes its nonce, and the other
    customer's transfer confirms right behind it. The failed customer's next transfer
    confirms too (its wallet's forwarder nonce was given back)."""
    stack = stage.stack
    chain = ChainReader(stage.deployer, stage.contracts)
    sponsored_sender, plain_sender = await two_senders_sharing_a_key(stage)
    sponsor_id = await sponsor_the_stacks_utility(stack)
    [sponsored] = await queue_transfers(stack, [sponsored_sender], count=1)
    reserved = await rows_of(stack, sponsored.job_id)
    assert reserved.reserved_fee < RAISED_BASE_FEE
    # Every wei of the funds is reserved, and the utility stops sponsoring: the next transfer
    # is its customer's to pay for.
    await set_sponsor(stack, sponsor_id, funds_wei=reserved.sponsor.spent_wei, active=False)
    [plain] = await queue_transfers(stack, [plain_sender], count=1)

    async with worker_of(stack, RelayerWorker) as worker:
        with base_fee_raised(stage.deployer, to_wei=RAISED_BASE_FEE):
            await tick_until_status(worker, stack, sponsored.job_id, RelayStatus.FAILED)
            await work_until_final(stack, worker)
        [again] = await queue_transfers(stack, [sponsored_sender], count=1)
        await work_until_final(stack, worker)

    shown = await transaction_as_shown(stack, sponsored)
    assert shown["status"] == "FAILED"
    assert "BUDGET_EXHAUSTED" in shown["error"], shown
    assert "do not cover the network's current gas price" in shown["error"], shown
    assert reserved.sponsor.name in shown["error"], shown
    assert chain.ovpp_of(sponsored.recipient) == 0
    assert chain.ovpp_of(sponsored_sender.customer.address) == SENDER_OVPP - again.amount
    async with stack.services.db.session() as session:
        again_fee = (await session.get_one(RelayTransaction, again.job_id)).fee_amount
    # The customer paid the fee of its next, unsponsored, transfer, and nothing for this one.
    assert chain.usd_of(sponsored_sender.customer.address) == SENDER_USD - again_fee
    assert chain.ovpp_of(again.recipient) == again.amount

    # Nothing of it was mined: its reservation is settled at 0, every total back where it was.
    refused = await rows_of(stack, sponsored.job_id)
    assert refused.charge.settled
    assert refused.charge.amount_wei == 0
    assert refused.sponsor.spent_wei == reserved.sponsor.spent_wei - reserved.charge.amount_wei
    assert_totals_are_the_charge(refused)

    # Its nonce was filled; the other customer's transfer went through right behind it, and
    # the key's nonces have no gap, on chain and in the database.
    filler = await nonce_filler_of(stack, sponsored.job_id)
    assert filler is not None and filler.status == RelayStatus.CONFIRMED
    async with stack.services.db.session() as session:
        following = await session.get_one(RelayTransaction, plain.job_id)
        key = await session.get_one(RelayerKey, sponsored_sender.relayer_key_id)
        nonces = sorted(
            (
                await session.execute(
                    select(RelayTransaction.relayer_nonce).where(
                        RelayTransaction.relayer_key_id == key.id,
                        RelayTransaction.relayer_nonce.is_not(None),
                    )
                )
            ).scalars()
        )
    assert following.sponsor_id is None
    assert following.status == RelayStatus.CONFIRMED
    assert following.relayer_nonce == filler.relayer_nonce + 1
    assert chain.ovpp_of(plain.recipient) == plain.amount
    assert nonces == list(range(key.next_nonce))
    web3 = stage.deployer.web3
    assert web3.eth.get_transaction_count(key.address, "latest") == key.next_nonce
    assert web3.eth.get_transaction_count(key.address, "pending") == key.next_nonce


async def test_a_sponsored_job_the_node_once_accepted_is_not_failed_for_an_unfunded_re_price(
    stage: Stage,
) -> None:
    """A sponsored transaction was accepted and is waiting in the pool (copy A) when it is
    bumped with the last of its sponsor's funds (copy B, stored, not yet sent). Then the base
    fee rises above B: the node refuses B as underpriced, and the sponsor cannot fund a
    re-price. The job is not failed and its nonce not filled, round after round: A may still
    be mined. Once the base fee falls, A is mined, and the job confirms with A's hash, its
    charge settled to A's real cost."""
    stack = stage.stack
    reserved = await a_sponsored_job(stage)
    job_id = reserved.job.id
    assert 2 * reserved.reserved_fee < RAISED_BASE_FEE
    # Funds for one bump to twice the reserved fee, and nothing beyond.
    await set_sponsor(
        stack,
        reserved.sponsor.id,
        funds_wei=reserved.sponsor.spent_wei + reserved.charge.amount_wei,
    )

    async with worker_of(stack, SpikingWorker) as worker:
        with mining_paused(stage.deployer):
            accepted, bumped = await sent_then_bumped_in_a_spike(worker, stack, job_id)
            assert bumped.job.max_fee_per_gas == 2 * reserved.reserved_fee
            assert bumped.sponsor.funds_wei - bumped.sponsor.spent_wei < bumped.job.gas_limit

            worker.spike = None  # the chain's own fees from now on
            with base_fee_raised(stage.deployer, to_wei=RAISED_BASE_FEE):
                for _round in range(3):
                    assert await worker.tick()
                after = await rows_of(stack, job_id)
                assert after.job.status == RelayStatus.SIGNED
                assert (after.job.attempts, after.job.tx_hash) == (2, bumped.job.tx_hash)
                assert after.job.submitted_at is not None
                assert after.charge.amount_wei == bumped.charge.amount_wei
                assert not after.charge.settled
                assert await nonce_filler_of(stack, job_id) is None
        await work_until_final(stack, worker)

    settled = await settled_at_its_real_cost(stack, job_id)
    assert settled.job.tx_hash == accepted.job.tx_hash  # A, the copy the node had accepted
    assert_totals_are_the_charge(settled)
