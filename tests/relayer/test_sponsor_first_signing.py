"""The first signing of a sponsored job never takes its worst case past what its sponsor
reserved for it: in a fee spike between the job's acceptance and its signing, the job goes out
at the reserved fee (its charge ÷ its gas limit), and its settlement stays within the
reservation and the sponsor within its funds. A job without a sponsor signs at the spike.

Each test has its own database and relayer keys (``own_stack``) on the session's anvil. The
spike is a worker whose gas price reads return it (the chain's own base fee stays low, so a
transaction at the reserved fee is mined); anvil's automine is paused to look at a signed
transaction before it is mined."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes
from sqlalchemy import event, select

from chain.calls import Call
from chain.erc20 import erc20_transfer_data
from programs.payment import ENROLL_TX_GAS, gas_payment
from relayer import sponsorship
from relayer.jobs import Display, GasPayment, queue_call, reserve_nonces
from relayer.models import FeeQuote, JobKind, RelayAttempt, RelayStatus, RelayTransaction, Sponsor
from relayer.service import TRANSFER_CALL_GAS
from tests.support.own_stack import (
    OVPP,
    OwnStack,
    queue_transfers,
    sponsor_the_stacks_utility,
    work_until_final,
)
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
    settled_at_its_real_cost,
    tick_until_status,
    two_senders_sharing_a_key,
    with_no_funds_beyond_its_reservations,
    worker_of,
)
from wallet.models import Wallet

pytestmark = pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)

SPONSORS_TABLE = re.compile(r"\bsponsors\b", re.IGNORECASE)


class CountingSpikingWorker(SpikingWorker):
    """A spiking worker that records the SQL statements of each signing round that signed
    something (``sign_queued``), one list per round."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signing_rounds: list[list[str]] = []

    async def sign_queued(self, key_id: str, gas_price: tuple[int, int]) -> bool:
        with statements_run(self.services.db.engine.sync_engine) as statements:
            signed = await super().sign_queued(key_id, gas_price)
        if signed:
            self.signing_rounds.append(statements)
        return signed


@contextmanager
def statements_run(engine: Any) -> Iterator[list[str]]:
    """Every statement the engine sends while the block runs (an executemany counts once)."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def fees_signed(raw_transaction: bytes) -> tuple[int, int, int]:
    """(max fee, tip, gas limit) of a signed EIP-1559 transaction, as the node reads them."""
    fields = TypedTransaction.from_bytes(HexBytes(raw_transaction)).as_dict()
    return fields["maxFeePerGas"], fields["maxPriorityFeePerGas"], fields["gas"]


async def assert_signed_at(stack: OwnStack, job_id: str, *, max_fee: int, tip: int) -> None:
    """The job's row, its one attempt and its raw transaction all carry these fees."""
    async with stack.services.db.session() as session:
        job = await session.get_one(RelayTransaction, job_id)
        attempts = list(
            (
                await session.execute(
                    select(RelayAttempt).where(RelayAttempt.relay_transaction_id == job_id)
                )
            ).scalars()
        )
    assert (job.max_fee_per_gas, job.max_priority_fee_per_gas) == (max_fee, tip)
    assert job.raw_transaction is not None
    assert fees_signed(job.raw_transaction) == (max_fee, tip, job.gas_limit)
    assert [(a.max_fee_per_gas, a.max_priority_fee_per_gas) for a in attempts] == [(max_fee, tip)]


async def settled_within(stack: OwnStack, reserved: SponsorRows) -> SponsorRows:
    """The job's rows, once it is confirmed at its first transaction, its charge settled to
    the real cost, at most its reservation as ``reserved``, and its sponsor within its
    funds."""
    settled = await settled_at_its_real_cost(stack, reserved.job.id)
    assert settled.job.attempts == 1
    assert 0 < settled.charge.amount_wei <= reserved.charge.amount_wei
    assert settled.sponsor.spent_wei <= settled.sponsor.funds_wei
    return settled


async def signed_at_the_reserved_fee_in_a_spike(stage: Stage, reserved: SponsorRows) -> None:
    """A spiking worker signs and sends the job at its reserved fee (tip included), not at
    the spike, then works until everything is final; the job confirms within its
    reservation, the sponsor's only charge all its totals hold."""
    assert reserved.reserved_fee < SPIKE[1] <= SPIKE[0]
    stack, job_id = stage.stack, reserved.job.id
    async with worker_of(stack, SpikingWorker, spike=SPIKE) as worker:
        with mining_paused(stage.deployer):
            await tick_until_status(worker, stack, job_id, RelayStatus.SUBMITTED)
            fee = reserved.reserved_fee
            await assert_signed_at(stack, job_id, max_fee=fee, tip=fee)
            sent = await rows_of(stack, job_id)
            assert sent.worst_case_wei <= sent.charge.amount_wei == reserved.charge.amount_wei
            assert not sent.charge.settled
            assert sent.sponsor.spent_wei == reserved.sponsor.spent_wei  # nothing reserved
            assert_totals_are_the_charge(sent)
        await work_until_final(stack, worker)
    assert_totals_are_the_charge(await settled_within(stack, reserved))


async def test_a_sponsored_transfer_signed_in_a_spike_goes_out_at_its_reserved_fee(
    stage: Stage,
) -> None:
    """The fees spike between a sponsored transfer's quote and its first signing, and its
    sponsor has nothing beyond this reservation left in its funds. The transaction is signed
    at the quote's max fee (tip included), which the reservation covers, not at the spike;
    the charge and the sponsor's totals are untouched, and once mined the charge settles to
    the real cost, within the reservation: the sponsor never spends past its funds."""
    reserved = await a_sponsored_job(stage)
    await with_no_funds_beyond_its_reservations(stage.stack, reserved)
    async with stage.stack.services.db.session() as session:
        quote = await session.get_one(FeeQuote, reserved.job.quote_id)
    # A transfer's reservation is its quote's worst case: the cap is the quote's max fee.
    assert reserved.charge.amount_wei == quote.gas_limit * quote.max_fee_per_gas
    assert reserved.job.gas_limit == quote.gas_limit
    assert reserved.reserved_fee == quote.max_fee_per_gas

    await signed_at_the_reserved_fee_in_a_spike(stage, reserved)


async def test_one_signing_round_caps_its_sponsored_jobs_and_leaves_the_others_at_the_spike(
    stage: Stage,
) -> None:
    """One relayer key has, queued in a spike, a transfer its customer pays the gas of and
    two sponsored ones. One signing round signs the three: the sponsored ones at their
    reserved fees, the other at the spike as before (its gas is the operator's, its
    customer's fee fixed in the signed request). The round reads the reservations with the
    jobs: it sends as many statements as a round signing one unsponsored job alone, and none
    of them reads or locks a sponsor."""
    stack = stage.stack
    plain_sender, sponsored_sender = await two_senders_sharing_a_key(stage)
    async with worker_of(stack, CountingSpikingWorker, spike=SPIKE) as worker:
        [alone] = await queue_transfers(stack, [plain_sender], count=1)
        await tick_until_status(worker, stack, alone.job_id, RelayStatus.CONFIRMED)
        [statements_alone] = worker.signing_rounds

        [plain] = await queue_transfers(stack, [plain_sender], count=1)
        await sponsor_the_stacks_utility(stack)
        sponsored = await queue_transfers(stack, [sponsored_sender], count=2)
        reserved = [await rows_of(stack, transfer.job_id) for transfer in sponsored]
        with mining_paused(stage.deployer):
            assert await worker.tick()
            assert len(worker.signing_rounds) == 2, "the three jobs took more than one round"
            statements_together = worker.signing_rounds[1]

            async with stack.services.db.session() as session:
                plain_job = await session.get_one(RelayTransaction, plain.job_id)
            assert plain_job.sponsor_id is None
            assert plain_job.status == RelayStatus.SUBMITTED
            await assert_signed_at(stack, plain.job_id, max_fee=SPIKE[0], tip=SPIKE[1])
            for rows in reserved:
                assert rows.job.sponsor_id is not None
                assert rows.reserved_fee < SPIKE[0]
                sent = await rows_of(stack, rows.job.id)
                assert sent.job.status == RelayStatus.SUBMITTED
                await assert_signed_at(
                    stack, rows.job.id, max_fee=rows.reserved_fee, tip=rows.reserved_fee
                )
                assert sent.charge.amount_wei == rows.charge.amount_wei
        await work_until_final(stack, worker)

    assert len(statements_together) == len(statements_alone), (
        statements_alone,
        statements_together,
    )
    assert not [s for s in statements_alone + statements_together if SPONSORS_TABLE.search(s)]
    settled = [await settled_within(stack, rows) for rows in reserved]
    # The sponsor's only charges, both settled: its total spent is their real cost.
    assert settled[-1].sponsor.spent_wei == sum(rows.charge.amount_wei for rows in settled)


async def test_a_job_queued_again_is_capped_at_its_grown_reservation_not_its_quote(
    stage: Stage,
) -> None:
    """A sponsored job whose bumped transaction reverted without executing is queued again
    (``track_submitted``) with its reservation as the bump grew it, unsettled: here that
    state is made directly, growing a queued job's reservation with the bump's own
    ``reserve_fee_bump``. Signed again in a spike, it goes out at what the grown reservation
    covers, above its quote's max fee and below the spike."""
    stack = stage.stack
    quoted = await a_sponsored_job(stage)
    job_id = quoted.job.id
    grown_fee = quoted.reserved_fee * 3
    async with stack.services.db.session() as session:
        covered = await sponsorship.reserve_fee_bump(
            session,
            sponsor_id=quoted.sponsor.id,
            relay_transaction_id=job_id,
            gas_limit=quoted.job.gas_limit,
            max_fee_per_gas=grown_fee,
            min_max_fee_per_gas=grown_fee,
        )
    assert covered == grown_fee
    grown = await rows_of(stack, job_id)
    assert grown.job.status == RelayStatus.QUEUED
    assert grown.charge.amount_wei == grown.job.gas_limit * grown_fee
    assert grown.reserved_fee == grown_fee
    assert_totals_are_the_charge(grown)

    await signed_at_the_reserved_fee_in_a_spike(stage, grown)


async def test_a_job_sponsored_through_the_enrollment_path_is_capped_at_its_charge(
    stage: Stage,
) -> None:
    """Enrollment, unenrollment and card-paid enrollment have no fee quote: their sponsor is
    charged the gas limit × the gas price read at enqueueing (``gas_payment``), and the job
    queued by ``queue_call``. Such a job (an OVPP transfer here, at the enrollment gas
    limit) signed in a spike goes out at its charge ÷ its gas limit, and settles within the
    charge, with the sponsor left with nothing beyond it."""
    stack, contracts = stage.stack, stage.contracts
    sender = await a_sender(stage)
    sponsor_id = await sponsor_the_stacks_utility(stack)
    recipient = Account.create().address
    async with stack.services.db.session() as session:
        wallet = await session.get_one(Wallet, sender.wallet_id)
        calls = [
            Call(
                target=contracts.ovpp_token,
                data=erc20_transfer_data(recipient, OVPP),
                gas=TRANSFER_CALL_GAS,
            )
        ]
        first_nonce = await reserve_nonces(
            session, wallet_id=wallet.id, calls=calls, payment=GasPayment()
        )
        sponsor = await session.get_one(Sponsor, sponsor_id)
        payment = await gas_payment(
            session,
            services=stack.services,
            tenant_id=sponsor.tenant_id,
            customer_id=wallet.customer_id,
            gas_sponsored=True,
            gas_limit=ENROLL_TX_GAS,
            gas_fee=0,
        )
        job = await queue_call(
            session,
            services=stack.services,
            wallet=wallet,
            customer_id=wallet.customer_id,
            first_nonce=first_nonce,
            calls=calls,
            payment=payment,
            gas_limit=ENROLL_TX_GAS,
            kind=JobKind.ENROLL,
            idempotency_key=f"first-signing-{uuid.uuid4().hex}",
            request_fingerprint="first-signing",
            display=Display(
                token="OVPP",
                token_address=contracts.ovpp_token,
                to_address=recipient,
                amount=OVPP,
            ),
        )
    reserved = await rows_of(stack, job.id)
    assert reserved.charge.amount_wei == payment.sponsor_charge_wei
    assert reserved.job.gas_limit == ENROLL_TX_GAS
    await with_no_funds_beyond_its_reservations(stack, reserved)

    await signed_at_the_reserved_fee_in_a_spike(stage, reserved)
