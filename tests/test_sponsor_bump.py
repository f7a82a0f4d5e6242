"""A fee bump of a sponsored job never takes its worst case past what its sponsor reserved for
it, nor the sponsor past its funds: the reservation grows first (charge, spent, period,
customer's day), as far as the funds go, and the bump stops there.

Each test has its own database and relayer keys (``own_stack``) on the session's anvil. A
transaction is held unmined by pausing anvil's automine, made stuck by dating its submission
back, and bumped into a fee spike by a worker whose gas price reads return the spike."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.rpc import JsonRpc
from core.db import utc_now
from relayer.models import (
    RelayAttempt,
    RelayStatus,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
    SponsorCustomerDay,
)
from relayer.sponsorship import configure_sponsor
from relayer.worker import PIPELINE_STATUSES, RelayerWorker
from tests.support.issuer import TestIssuer
from tests.test_relayer_recovery import (  # noqa: F401 (own_stack: a fixture)
    OwnStack,
    QueuedTransfer,
    new_sender,
    own_stack,
    queue_transfers,
    sponsor_the_stacks_utility,
    tick_until,
)

GWEI = 10**9
# Far above anvil's idle base fee (about 1 gwei), below the relayer's cap (500 gwei). The tip
# is as high as the max fee, so a transaction mined in the spike pays about its max fee.
SPIKE = (40 * GWEI, 40 * GWEI)
BACKENDS = ["sqlite", "postgresql"]


class SpikingWorker(RelayerWorker):
    """A worker whose gas price reads return ``spike`` once it is set, as in a fee spike."""

    spike: tuple[int, int] | None = None

    async def _gas_price(self) -> tuple[int, int]:
        return self.spike if self.spike is not None else await super()._gas_price()


class FirstSigningUnderpriced(SpikingWorker):
    """A worker whose first signing round prices at 0, below any base fee: the node refuses
    the transaction as underpriced and the worker re-prices it at once, at the spike."""

    signed_once = False

    async def _gas_price(self) -> tuple[int, int]:
        if not self.signed_once:
            self.signed_once = True
            return 0, 0
        return await super()._gas_price()


@dataclass(frozen=True)
class SponsorRows:
    """A sponsored job and its sponsor's rows, as they are in the database."""

    job: RelayTransaction
    charge: SponsorCharge
    sponsor: Sponsor
    customer_day: SponsorCustomerDay

    @property
    def worst_case_wei(self) -> int:
        """What the job's transaction may cost at most: its gas limit × its max fee."""
        assert self.job.max_fee_per_gas is not None
        return self.job.gas_limit * self.job.max_fee_per_gas


async def rows_of(stack: OwnStack, job_id: str) -> SponsorRows:
    async with stack.services.db.session() as session:
        job = await session.get_one(RelayTransaction, job_id)
        charge = (
            await session.execute(
                select(SponsorCharge).where(SponsorCharge.relay_transaction_id == job_id)
            )
        ).scalar_one()
        sponsor = await session.get_one(Sponsor, charge.sponsor_id)
        day = await session.get_one(
            SponsorCustomerDay,
            (charge.sponsor_id, charge.customer_id, charge.created_at.date().isoformat()),
        )
    return SponsorRows(job=job, charge=charge, sponsor=sponsor, customer_day=day)


@contextlib.contextmanager
def mining_paused(deployer: Deployer) -> Iterator[None]:
    """Anvil mines nothing in the block: a transaction sent stays in its pool. After it,
    everything pending is mined, and anvil mines each transaction as it comes again."""
    provider = deployer.web3.provider
    provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        yield
    finally:
        provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
        provider.make_request("evm_mine", [])  # type: ignore[arg-type]


async def submitted_long_ago(stack: OwnStack, job_id: str) -> None:
    """The job's transaction has waited past ``relayer_stuck_seconds`` without a receipt."""
    async with stack.services.db.session() as session:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == job_id)
            .values(submitted_at=utc_now() - timedelta(hours=1))
        )


async def status_of(stack: OwnStack, job_id: str) -> str:
    async with stack.services.db.session() as session:
        return (await session.get_one(RelayTransaction, job_id)).status


async def tick_until_status(
    worker: RelayerWorker, stack: OwnStack, job_id: str, status: str
) -> None:
    """Runs the worker's rounds until the job has ``status``."""
    for _round in range(50):
        if await status_of(stack, job_id) == status:
            return
        await worker.tick()
    raise AssertionError(f"job {job_id} never reached {status}: {await status_of(stack, job_id)}")


async def work_until_final(worker: RelayerWorker, stack: OwnStack) -> None:
    await tick_until(
        worker, stack.services.db, lambda counts: not counts.keys() & set(PIPELINE_STATUSES)
    )


async def a_sponsored_transfer(
    stack: OwnStack, issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> QueuedTransfer:
    """One sponsored transfer, queued (its worst case reserved from the sponsor)."""
    await sponsor_the_stacks_utility(stack)
    sender = await new_sender(stack, issuer, deployer, contracts)
    [transfer] = await queue_transfers(stack, [sender], count=1)
    return transfer


async def set_sponsor(session: AsyncSession, sponsor_id: str, **values: object) -> None:
    await session.execute(update(Sponsor).where(Sponsor.id == sponsor_id).values(**values))


async def actual_cost_wei(stack: OwnStack, tx_hash: str) -> int:
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    try:
        receipt = await rpc.call("eth_getTransactionReceipt", tx_hash)
    finally:
        await rpc.close()
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


def assert_totals_are_the_charge(rows: SponsorRows, *, period: bool = True) -> None:
    """The sponsor's only charge is all its totals hold, and within its funds."""
    amount = rows.charge.amount_wei
    assert rows.sponsor.spent_wei == amount
    assert rows.sponsor.period_spent_wei == (amount if period else 0)
    assert rows.customer_day.spent_wei == amount
    assert rows.sponsor.spent_wei <= rows.sponsor.funds_wei


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_bump_past_the_reservation_grows_it_first_even_past_the_caps(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A sponsored transfer's transaction is stuck when the fees spike. Its bump raises the
    max fee far above what was reserved: the reservation grows to the new worst case first,
    in the charge, the sponsor's spent and period totals and the customer's day. The caps
    (here tightened to exactly the reservation after the job was accepted) do not stop it;
    the funds would. Once mined, the charge settles to the real cost, in every total."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    reserved = await rows_of(own_stack, transfer.job_id)
    async with own_stack.services.db.session() as session:
        await configure_sponsor(
            session,
            tenant_id=reserved.sponsor.tenant_id,
            name=reserved.sponsor.name,
            per_transaction_cap_wei=reserved.charge.amount_wei,
            per_customer_daily_cap_wei=reserved.charge.amount_wei,
            period_cap_wei=reserved.charge.amount_wei,
        )

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
            sent = await rows_of(own_stack, transfer.job_id)
            await submitted_long_ago(own_stack, transfer.job_id)
            worker.spike = SPIKE
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SIGNED)

            bumped = await rows_of(own_stack, transfer.job_id)
            assert bumped.job.attempts == 2
            assert bumped.job.max_fee_per_gas == SPIKE[0]
            assert bumped.worst_case_wei > reserved.charge.amount_wei
            assert bumped.charge.amount_wei == bumped.worst_case_wei
            assert not bumped.charge.settled
            assert bumped.charge.amount_wei > bumped.sponsor.per_transaction_cap_wei
            assert_totals_are_the_charge(bumped)

            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
        worker.spike = None
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await rows_of(own_stack, transfer.job_id)
    assert settled.job.status == RelayStatus.CONFIRMED
    assert settled.job.tx_hash != sent.job.tx_hash  # the bumped copy was mined
    assert settled.charge.settled
    assert settled.charge.amount_wei == await actual_cost_wei(own_stack, settled.job.tx_hash)
    assert settled.charge.amount_wei > reserved.charge.amount_wei  # the spike was paid
    assert_totals_are_the_charge(settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_sponsor_short_of_funds_gets_only_the_bump_it_can_pay_for(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The sponsor has half the reservation left in its funds when its customer's stuck
    transaction meets a fee spike. The bump goes as far as the reservation plus those funds
    cover, not to the spike, and the sponsor ends with exactly its funds spent at most: never
    past them, neither reserved nor once the transaction is mined in the spike."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    reserved = await rows_of(own_stack, transfer.job_id)
    remaining = reserved.charge.amount_wei // 2
    async with own_stack.services.db.session() as session:
        await set_sponsor(
            session, reserved.sponsor.id, funds_wei=reserved.sponsor.spent_wei + remaining
        )

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    caplog.set_level(logging.WARNING, logger="relayer.worker")
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
            sent = await rows_of(own_stack, transfer.job_id)
            await submitted_long_ago(own_stack, transfer.job_id)
            worker.spike = SPIKE
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SIGNED)

            bumped = await rows_of(own_stack, transfer.job_id)
            affordable = (reserved.charge.amount_wei + remaining) // bumped.job.gas_limit
            assert sent.job.max_fee_per_gas is not None
            assert affordable > sent.job.max_fee_per_gas * 110 // 100
            assert bumped.job.max_fee_per_gas == affordable < SPIKE[0]
            assert bumped.charge.amount_wei == bumped.worst_case_wei
            assert_totals_are_the_charge(bumped)
            assert bumped.sponsor.funds_wei - bumped.sponsor.spent_wei < bumped.job.gas_limit
            assert any(
                transfer.job_id in record.getMessage()
                and bumped.sponsor.name in record.getMessage()
                for record in caplog.records
            ), caplog.text

            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await rows_of(own_stack, transfer.job_id)
    assert settled.job.status == RelayStatus.CONFIRMED
    assert settled.charge.settled
    assert settled.charge.amount_wei == await actual_cost_wei(own_stack, settled.job.tx_hash)
    assert_totals_are_the_charge(settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_sponsor_whose_funds_are_spent_leaves_its_stuck_job_unbumped(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every wei of the sponsor's funds is spent or reserved: a bump of its customer's stuck
    transaction, even the smallest a node accepts, would be gas the utility never paid for.
    The job stays as it was (same transaction, same fee, nothing reserved), an error names the
    job and the sponsor, and the transaction confirms once the chain takes it."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    reserved = await rows_of(own_stack, transfer.job_id)
    async with own_stack.services.db.session() as session:
        await set_sponsor(session, reserved.sponsor.id, funds_wei=reserved.sponsor.spent_wei)

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    caplog.set_level(logging.ERROR, logger="relayer.worker")
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
            sent = await rows_of(own_stack, transfer.job_id)
            await submitted_long_ago(own_stack, transfer.job_id)
            worker.spike = SPIKE
            assert await worker.tick()

            after = await rows_of(own_stack, transfer.job_id)
            assert after.job.status == RelayStatus.SUBMITTED
            assert (after.job.attempts, after.job.tx_hash) == (1, sent.job.tx_hash)
            assert after.job.max_fee_per_gas == sent.job.max_fee_per_gas
            assert after.charge.amount_wei == reserved.charge.amount_wei
            assert_totals_are_the_charge(after)
            async with own_stack.services.db.session() as session:
                attempts = (
                    await session.execute(
                        select(RelayAttempt).where(
                            RelayAttempt.relay_transaction_id == transfer.job_id
                        )
                    )
                ).all()
            assert len(attempts) == 1
            assert any(
                record.levelno == logging.ERROR
                and transfer.job_id in record.getMessage()
                and after.sponsor.name in record.getMessage()
                for record in caplog.records
            ), caplog.text
        worker.spike = None
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await rows_of(own_stack, transfer.job_id)
    assert (settled.job.status, settled.job.tx_hash) == (RelayStatus.CONFIRMED, sent.job.tx_hash)
    assert settled.charge.settled
    assert settled.charge.amount_wei == await actual_cost_wei(own_stack, settled.job.tx_hash)
    assert_totals_are_the_charge(settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_bump_grows_the_period_only_when_the_charge_was_made_in_it(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A new budget period began after the job was accepted: the bump's growth counts in the
    sponsor's total spent and the customer's day of the charge, not in the new period, just
    as the charge's settlement leaves that period alone."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    reserved = await rows_of(own_stack, transfer.job_id)
    async with own_stack.services.db.session() as session:
        await set_sponsor(
            session,
            reserved.sponsor.id,
            period_started_at=reserved.charge.created_at + timedelta(seconds=1),
            period_spent_wei=0,
        )

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
            await submitted_long_ago(own_stack, transfer.job_id)
            worker.spike = SPIKE
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SIGNED)

            bumped = await rows_of(own_stack, transfer.job_id)
            assert bumped.job.max_fee_per_gas == SPIKE[0]
            assert bumped.charge.amount_wei == bumped.worst_case_wei > reserved.charge.amount_wei
            assert_totals_are_the_charge(bumped, period=False)

            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
        worker.spike = None
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await rows_of(own_stack, transfer.job_id)
    assert settled.charge.settled
    assert settled.charge.amount_wei == await actual_cost_wei(own_stack, settled.job.tx_hash)
    assert_totals_are_the_charge(settled, period=False)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_sponsored_job_re_priced_after_underpriced_grows_its_reservation_first(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The node refuses a sponsored job's first transaction as underpriced and the worker
    re-prices it at once, in a fee spike (the broadcast round's other bump): the reservation
    grows to the new worst case before that copy is stored, and settles to the real cost."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    reserved = await rows_of(own_stack, transfer.job_id)

    worker = FirstSigningUnderpriced(own_stack.services, name="test-relayer")
    worker.spike = SPIKE
    try:
        await worker.tick()  # signed at 0, refused as underpriced, re-priced at the spike
        repriced = await rows_of(own_stack, transfer.job_id)
        assert repriced.job.status == RelayStatus.SIGNED
        assert (repriced.job.attempts, repriced.job.max_fee_per_gas) == (2, SPIKE[0])
        assert repriced.charge.amount_wei == repriced.worst_case_wei > reserved.charge.amount_wei
        assert_totals_are_the_charge(repriced)

        worker.spike = None
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await rows_of(own_stack, transfer.job_id)
    assert settled.job.status == RelayStatus.CONFIRMED
    assert settled.charge.settled
    assert settled.charge.amount_wei == await actual_cost_wei(own_stack, settled.job.tx_hash)
    assert_totals_are_the_charge(settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_job_without_a_sponsor_is_bumped_to_the_spike_as_before(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Without a sponsor, the relayer operator bears a bump (the customer's fee is fixed in
    the signed forward request): nothing limits it but the fee cap, as before."""
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    [transfer] = await queue_transfers(own_stack, [sender], count=1)

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
            await submitted_long_ago(own_stack, transfer.job_id)
            worker.spike = SPIKE
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SIGNED)
            async with own_stack.services.db.session() as session:
                job = await session.get_one(RelayTransaction, transfer.job_id)
            assert job.sponsor_id is None
            assert (job.attempts, job.max_fee_per_gas) == (2, SPIKE[0])
        worker.spike = None
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()
    assert await status_of(own_stack, transfer.job_id) == RelayStatus.CONFIRMED
