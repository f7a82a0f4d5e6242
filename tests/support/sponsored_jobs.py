"""Sponsored jobs on a test's own stack (``own_stack``, from tests/conftest.py):
queued through GraphQL, worked by an in-process worker whose gas price reads can be made to
spike, and read back with their sponsor's rows (charge, totals, customer's day).

A test module uses them with ``pytestmark = pytest.mark.parametrize("own_stack", BACKENDS,
indirect=True)`` and asks for ``stage`` (tests/relayer/conftest.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import update
from sqlmodel import select

from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.rpc import JsonRpc
from core.db import utc_now
from relayer.models import (
    RelayStatus,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
    SponsorCustomerDay,
)
from relayer.worker import RelayerWorker
from tests.support.issuer import TestIssuer
from tests.support.own_stack import (
    OwnStack,
    Sender,
    new_sender,
    queue_transfers,
    sponsor_the_stacks_utility,
    two_senders_on_one_key,
)

BACKENDS = ["sqlite", "postgresql"]
GWEI = 10**9
# Far above anvil's idle base fee (about 1 gwei), below the relayer's cap (500 gwei). The tip
# is as high as the max fee, so a transaction mined in the spike pays about its max fee.
SPIKE = (40 * GWEI, 40 * GWEI)

W = TypeVar("W", bound=RelayerWorker)


@dataclass(frozen=True)
class Stage:
    """A test's own stack, and what makes customers and holds blocks on the session chain."""

    stack: OwnStack
    issuer: TestIssuer
    deployer: Deployer
    contracts: AddressBook


async def a_sender(stage: Stage) -> Sender:
    """A customer with a funded wallet (``new_sender``)."""
    return await new_sender(stage.stack, stage.issuer, stage.deployer, stage.contracts)


async def two_senders_sharing_a_key(stage: Stage) -> tuple[Sender, Sender]:
    """Two customers whose wallets' jobs go through one relayer key."""
    return await two_senders_on_one_key(stage.stack, stage.issuer, stage.deployer, stage.contracts)


async def a_sponsored_job(stage: Stage) -> SponsorRows:
    """One sponsored transfer, queued through GraphQL: its rows as its worst case was
    reserved from the sponsor (the utility sponsors gas from now on)."""
    await sponsor_the_stacks_utility(stage.stack)
    [transfer] = await queue_transfers(stage.stack, [await a_sender(stage)], count=1)
    return await rows_of(stage.stack, transfer.job_id)


# ------------------------------------------------------------------------------ the worker


class SpikingWorker(RelayerWorker):
    """A worker whose gas price reads return ``spike`` once it is set, as in a fee spike."""

    spike: tuple[int, int] | None = None

    async def read_gas_price(self) -> tuple[int, int]:
        return self.spike if self.spike is not None else await super().read_gas_price()


@contextlib.asynccontextmanager
async def worker_of(
    stack: OwnStack, worker_class: type[W], *, spike: tuple[int, int] | None = None
) -> AsyncIterator[W]:
    """An in-process worker on the stack (``spike`` set, for a ``SpikingWorker``), closed
    after the block."""
    worker = worker_class(stack.services, name="test-relayer")
    if spike is not None:
        assert isinstance(worker, SpikingWorker)
        worker.spike = spike
    try:
        yield worker
    finally:
        await worker.rpc.close()


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


async def stuck_when_the_fees_spike(worker: SpikingWorker, stack: OwnStack, job_id: str) -> None:
    """The job's transaction is sent (and, mining paused, not mined), has waited past
    ``relayer_stuck_seconds``, and the fees spike: the worker's next round bumps it."""
    await tick_until_status(worker, stack, job_id, RelayStatus.SUBMITTED)
    async with stack.services.db.session() as session:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == job_id)
            .values(submitted_at=utc_now() - timedelta(hours=1))
        )
    worker.spike = SPIKE


async def sent_then_bumped_in_a_spike(
    worker: SpikingWorker, stack: OwnStack, job_id: str
) -> tuple[SponsorRows, SponsorRows]:
    """The job's rows as its transaction was sent, and once it is bumped in a fee spike
    (``stuck_when_the_fees_spike``; the caller pauses mining): SIGNED again, its new copy
    stored and not yet sent."""
    await stuck_when_the_fees_spike(worker, stack, job_id)
    sent = await rows_of(stack, job_id)
    await tick_until_status(worker, stack, job_id, RelayStatus.SIGNED)
    return sent, await rows_of(stack, job_id)


# ------------------------------------------------------------------------------ the chain


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


@contextlib.contextmanager
def base_fee_raised(deployer: Deployer, *, to_wei: int) -> Iterator[None]:
    """The chain's next block has a base fee of ``to_wei``: until one is mined, the node
    refuses a transaction whose max fee is below it ("max fee per gas less than block base
    fee"); each block mined after lowers it by up to 12.5 %. After the block, the next base
    fee is what it was before (the session's chain is shared with later tests)."""
    provider, method = deployer.web3.provider, "anvil_setNextBlockBaseFeePerGas"
    before = deployer.web3.eth.get_block("pending")["baseFeePerGas"]
    provider.make_request(method, [hex(to_wei)])  # type: ignore[arg-type]
    try:
        yield
    finally:
        provider.make_request(method, [hex(before)])  # type: ignore[arg-type]


async def actual_cost_wei(stack: OwnStack, tx_hash: str) -> int:
    rpc = JsonRpc(stack.settings.resolved_rpc_url)
    try:
        receipt = await rpc.call("eth_getTransactionReceipt", tx_hash)
    finally:
        await rpc.close()
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


# ---------------------------------------------------------------------- the sponsor's rows


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

    @property
    def reserved_fee(self) -> int:
        """The highest max fee per gas the job's charge covers for its gas limit."""
        return self.charge.amount_wei // self.job.gas_limit


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


async def set_sponsor(stack: OwnStack, sponsor_id: str, **values: object) -> None:
    """The sponsor's row takes these values, as if its utility had been configured so."""
    async with stack.services.db.session() as session:
        await session.execute(update(Sponsor).where(Sponsor.id == sponsor_id).values(**values))


async def with_no_funds_beyond_its_reservations(stack: OwnStack, rows: SponsorRows) -> None:
    """The job's sponsor has every wei of its funds spent or reserved."""
    await set_sponsor(stack, rows.sponsor.id, funds_wei=rows.sponsor.spent_wei)


def assert_totals_are_the_charge(rows: SponsorRows, *, period: bool = True) -> None:
    """The sponsor's only charge is all its totals hold, and within its funds."""
    amount = rows.charge.amount_wei
    assert rows.sponsor.spent_wei == amount
    assert rows.sponsor.period_spent_wei == (amount if period else 0)
    assert rows.customer_day.spent_wei == amount
    assert rows.sponsor.spent_wei <= rows.sponsor.funds_wei


async def settled_at_its_real_cost(stack: OwnStack, job_id: str) -> SponsorRows:
    """The job's rows, once it is confirmed and its charge settled to what its mined
    transaction cost (gas used × effective gas price)."""
    settled = await rows_of(stack, job_id)
    assert settled.job.status == RelayStatus.CONFIRMED
    assert settled.charge.settled
    assert settled.job.tx_hash is not None
    assert settled.charge.amount_wei == await actual_cost_wei(stack, settled.job.tx_hash)
    return settled
