"""A fee bump of a sponsored job never takes its worst case past what its sponsor reserved for
it, nor the sponsor past its funds: the reservation grows first (charge, spent, period,
customer's day), as far as the funds go, and the bump stops there.

Each test has its own database and relayer keys (``own_stack``) on the session's anvil. A
transaction is held unmined by pausing anvil's automine, made stuck by dating its submission
back, and bumped into a fee spike by a worker whose gas price reads return the spike."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlmodel import select

from relayer.models import RelayAttempt, RelayStatus, RelayTransaction
from relayer.sponsorship import configure_sponsor
from tests.support.own_stack import queue_transfers, work_until_final
from tests.support.sponsored_jobs import (
    BACKENDS,
    SPIKE,
    SpikingWorker,
    SponsorRows,
    Stage,
    a_sender,
    a_sponsored_job,
    assert_totals_are_the_charge,
    mining_paused,
    rows_of,
    sent_then_bumped_in_a_spike,
    set_sponsor,
    settled_at_its_real_cost,
    status_of,
    stuck_when_the_fees_spike,
    tick_until_status,
    with_no_funds_beyond_its_reservations,
    worker_of,
)

pytestmark = pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)


class FirstSigningUnderpriced(SpikingWorker):
    """A worker whose first signing round prices at 0, below any base fee: the node refuses
    the transaction as underpriced and the worker re-prices it at once, at the spike."""

    signed_once = False

    async def read_gas_price(self) -> tuple[int, int]:
        if not self.signed_once:
            self.signed_once = True
            return 0, 0
        return await super().read_gas_price()


def logged_naming_both(caplog: pytest.LogCaptureFixture, rows: SponsorRows, *, level: int) -> bool:
    """Whether a record at ``level`` or above names both the job and its sponsor."""
    return any(
        record.levelno >= level
        and rows.job.id in record.getMessage()
        and rows.sponsor.name in record.getMessage()
        for record in caplog.records
    )


async def test_a_bump_past_the_reservation_grows_it_first_even_past_the_caps(
    stage: Stage,
) -> None:
    """A sponsored transfer's transaction is stuck when the fees spike. Its bump raises the
    max fee far above what was reserved: the reservation grows to the new worst case first,
    in the charge, the sponsor's spent and period totals and the customer's day. The caps
    (here tightened to exactly the reservation after the job was accepted) do not stop it;
    the funds would. Once mined, the charge settles to the real cost, in every total."""
    stack = stage.stack
    reserved = await a_sponsored_job(stage)
    job_id = reserved.job.id
    async with stack.services.db.session() as session:
        await configure_sponsor(
            session,
            tenant_id=reserved.sponsor.tenant_id,
            name=reserved.sponsor.name,
            per_transaction_cap_wei=reserved.charge.amount_wei,
            per_customer_daily_cap_wei=reserved.charge.amount_wei,
            period_cap_wei=reserved.charge.amount_wei,
        )

    async with worker_of(stack, SpikingWorker) as worker:
        with mining_paused(stage.deployer):
            sent, bumped = await sent_then_bumped_in_a_spike(worker, stack, job_id)
            assert bumped.job.attempts == 2
            assert bumped.job.max_fee_per_gas == SPIKE[0]
            assert bumped.worst_case_wei > reserved.charge.amount_wei
            assert bumped.charge.amount_wei == bumped.worst_case_wei
            assert not bumped.charge.settled
            assert bumped.charge.amount_wei > bumped.sponsor.per_transaction_cap_wei
            assert_totals_are_the_charge(bumped)

            await tick_until_status(worker, stack, job_id, RelayStatus.SUBMITTED)
        worker.spike = None
        await work_until_final(stack, worker)

    settled = await settled_at_its_real_cost(stack, job_id)
    assert settled.job.tx_hash != sent.job.tx_hash  # the bumped copy was mined
    assert settled.charge.amount_wei > reserved.charge.amount_wei  # the spike was paid
    assert_totals_are_the_charge(settled)


async def test_a_sponsor_short_of_funds_gets_only_the_bump_it_can_pay_for(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """The sponsor has half the reservation left in its funds when its customer's stuck
    transaction meets a fee spike. The bump goes as far as the reservation plus those funds
    cover, not to the spike, and the sponsor ends with exactly its funds spent at most: never
    past them, neither reserved nor once the transaction is mined in the spike."""
    stack = stage.stack
    reserved = await a_sponsored_job(stage)
    job_id = reserved.job.id
    remaining = reserved.charge.amount_wei // 2
    await set_sponsor(stack, reserved.sponsor.id, funds_wei=reserved.sponsor.spent_wei + remaining)

    caplog.set_level(logging.WARNING, logger="relayer.pipeline")
    async with worker_of(stack, SpikingWorker) as worker:
        with mining_paused(stage.deployer):
            sent, bumped = await sent_then_bumped_in_a_spike(worker, stack, job_id)
            affordable = (reserved.charge.amount_wei + remaining) // bumped.job.gas_limit
            assert sent.job.max_fee_per_gas is not None
            assert affordable > sent.job.max_fee_per_gas * 110 // 100
            assert bumped.job.max_fee_per_gas == affordable < SPIKE[0]
            assert bumped.charge.amount_wei == bumped.worst_case_wei
            assert_totals_are_the_charge(bumped)
            assert bumped.sponsor.funds_wei - bumped.sponsor.spent_wei < bumped.job.gas_limit
            assert logged_naming_both(caplog, bumped, level=logging.WARNING), caplog.text

            await tick_until_status(worker, stack, job_id, RelayStatus.SUBMITTED)
        await work_until_final(stack, worker)

    assert_totals_are_the_charge(await settled_at_its_real_cost(stack, job_id))


async def test_a_sponsor_whose_funds_are_spent_leaves_its_stuck_job_unbumped(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    """Every wei of the sponsor's funds is spent or reserved: a bump of its customer's stuck
    transaction, even the smallest a node accepts, would be gas the utility never paid for.
    The job stays as it was (same transaction, same fee, nothing reserved), an error names the
    job and the sponsor, and the transaction confirms once the chain takes it."""
    stack = stage.stack
    reserved = await a_sponsored_job(stage)
    job_id = reserved.job.id
    await with_no_funds_beyond_its_reservations(stack, reserved)

    caplog.set_level(logging.ERROR, logger="relayer.pipeline")
    async with worker_of(stack, SpikingWorker) as worker:
        with mining_paused(stage.deployer):
            await stuck_when_the_fees_spike(worker, stack, job_id)
            sent = await rows_of(stack, job_id)
            assert await worker.tick()

            after = await rows_of(stack, job_id)
            assert after.job.status == RelayStatus.SUBMITTED
            assert (after.job.attempts, after.job.tx_hash) == (1, sent.job.tx_hash)
            assert after.job.max_fee_per_gas == sent.job.max_fee_per_gas
            assert after.charge.amount_wei == reserved.charge.amount_wei
            assert_totals_are_the_charge(after)
            async with stack.services.db.session() as session:
                attempts = (
                    await session.execute(
                        select(RelayAttempt).where(RelayAttempt.relay_transaction_id == job_id)
                    )
                ).all()
            assert len(attempts) == 1
            assert logged_naming_both(caplog, after, level=logging.ERROR), caplog.text
        worker.spike = None
        await work_until_final(stack, worker)

    settled = await settled_at_its_real_cost(stack, job_id)
    assert settled.job.tx_hash == sent.job.tx_hash
    assert_totals_are_the_charge(settled)


async def test_a_bump_grows_the_period_only_when_the_charge_was_made_in_it(
    stage: Stage,
) -> None:
    """A new budget period began after the job was accepted: the bump's growth counts in the
    sponsor's total spent and the customer's day of the charge, not in the new period, just
    as the charge's settlement leaves that period alone."""
    stack = stage.stack
    reserved = await a_sponsored_job(stage)
    job_id = reserved.job.id
    await set_sponsor(
        stack,
        reserved.sponsor.id,
        period_started_at=reserved.charge.created_at + timedelta(seconds=1),
        period_spent_wei=0,
    )

    async with worker_of(stack, SpikingWorker) as worker:
        with mining_paused(stage.deployer):
            _sent, bumped = await sent_then_bumped_in_a_spike(worker, stack, job_id)
            assert bumped.job.max_fee_per_gas == SPIKE[0]
            assert bumped.charge.amount_wei == bumped.worst_case_wei > reserved.charge.amount_wei
            assert_totals_are_the_charge(bumped, period=False)

            await tick_until_status(worker, stack, job_id, RelayStatus.SUBMITTED)
        worker.spike = None
        await work_until_final(stack, worker)

    settled = await settled_at_its_real_cost(stack, job_id)
    assert_totals_are_the_charge(settled, period=False)


async def test_a_sponsored_job_re_priced_after_underpriced_grows_its_reservation_first(
    stage: Stage,
) -> None:
    """The node refuses a sponsored job's first transaction as underpriced and the worker
    re-prices it at once, in a fee spike (the broadcast round's other bump): the reservation
    grows to the new worst case before that copy is stored, and settles to the real cost."""
    stack = stage.stack
    reserved = await a_sponsored_job(stage)
    job_id = reserved.job.id

    async with worker_of(stack, FirstSigningUnderpriced, spike=SPIKE) as worker:
        await worker.tick()  # signed at 0, refused as underpriced, re-priced at the spike
        repriced = await rows_of(stack, job_id)
        assert repriced.job.status == RelayStatus.SIGNED
        assert (repriced.job.attempts, repriced.job.max_fee_per_gas) == (2, SPIKE[0])
        assert repriced.charge.amount_wei == repriced.worst_case_wei > reserved.charge.amount_wei
        assert_totals_are_the_charge(repriced)

        worker.spike = None
        await work_until_final(stack, worker)

    assert_totals_are_the_charge(await settled_at_its_real_cost(stack, job_id))


async def test_a_job_without_a_sponsor_is_bumped_to_the_spike_as_before(stage: Stage) -> None:
    """Without a sponsor, the relayer operator bears a bump (the customer's fee is fixed in
    the signed forward request): nothing limits it but the fee cap, as before."""
    stack = stage.stack
    [transfer] = await queue_transfers(stack, [await a_sender(stage)], count=1)
    job_id = transfer.job_id

    async with worker_of(stack, SpikingWorker) as worker:
        with mining_paused(stage.deployer):
            await stuck_when_the_fees_spike(worker, stack, job_id)
            await tick_until_status(worker, stack, job_id, RelayStatus.SIGNED)
            async with stack.services.db.session() as session:
                job = await session.get_one(RelayTransaction, job_id)
            assert job.sponsor_id is None
            assert (job.attempts, job.max_fee_per_gas) == (2, SPIKE[0])
        worker.spike = None
        await work_until_final(stack, worker)
    assert await status_of(stack, job_id) == RelayStatus.CONFIRMED
