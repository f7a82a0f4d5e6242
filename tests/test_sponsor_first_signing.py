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

from chain.address_book import AddressBook
from chain.deploy import Deployer
from programs.service import ENROLL_TX_GAS, _gas_payment
from registry_client.types import Call
from relayer import sponsorship
from relayer.calls import Display, enqueue_calls, take_forwarder_nonces
from relayer.forwarder import erc20_transfer_data
from relayer.models import FeeQuote, RelayAttempt, RelayStatus, RelayTransaction, Sponsor
from relayer.service import TRANSFER_CALL_GAS
from tests.support.issuer import TestIssuer
from tests.test_relayer_recovery import (  # noqa: F401 (own_stack: a fixture)
    OVPP,
    OwnStack,
    new_sender,
    own_stack,
    queue_transfers,
    sponsor_the_stacks_utility,
    two_senders_on_one_key,
)
from tests.test_sponsor_bump import (
    BACKENDS,
    SPIKE,
    SpikingWorker,
    SponsorRows,
    a_sponsored_transfer,
    actual_cost_wei,
    assert_totals_are_the_charge,
    mining_paused,
    rows_of,
    set_sponsor,
    tick_until_status,
    work_until_final,
)
from wallet.models import Wallet

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


def reserved_fee_of(rows: SponsorRows) -> int:
    """The highest max fee per gas the job's reservation covers for its gas limit."""
    return rows.charge.amount_wei // rows.job.gas_limit


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


async def settled_within(stack: OwnStack, job_id: str, *, reservation_wei: int) -> SponsorRows:
    """The job's rows, once it is confirmed at its first transaction, its charge settled to
    the real cost, at most the reservation, and its sponsor within its funds."""
    settled = await rows_of(stack, job_id)
    assert settled.job.status == RelayStatus.CONFIRMED
    assert settled.job.attempts == 1
    assert settled.charge.settled
    assert settled.job.tx_hash is not None
    assert settled.charge.amount_wei == await actual_cost_wei(stack, settled.job.tx_hash)
    assert 0 < settled.charge.amount_wei <= reservation_wei
    assert settled.sponsor.spent_wei <= settled.sponsor.funds_wei
    return settled


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_sponsored_transfer_signed_in_a_spike_goes_out_at_its_reserved_fee(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The fees spike between a sponsored transfer's quote and its first signing, and its
    sponsor has nothing beyond this reservation left in its funds. The transaction is signed
    at the quote's max fee (tip included), which the reservation covers, not at the spike;
    the charge and the sponsor's totals are untouched, and once mined the charge settles to
    the real cost, within the reservation: the sponsor never spends past its funds."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    reserved = await rows_of(own_stack, transfer.job_id)
    async with own_stack.services.db.session() as session:
        quote = await session.get_one(FeeQuote, reserved.job.quote_id)
        await set_sponsor(session, reserved.sponsor.id, funds_wei=reserved.sponsor.spent_wei)
    # A transfer's reservation is its quote's worst case: the cap is the quote's max fee.
    assert reserved.charge.amount_wei == quote.gas_limit * quote.max_fee_per_gas
    assert reserved.job.gas_limit == quote.gas_limit
    reserved_fee = reserved_fee_of(reserved)
    assert reserved_fee == quote.max_fee_per_gas < SPIKE[1] <= SPIKE[0]

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    worker.spike = SPIKE
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)

            sent = await rows_of(own_stack, transfer.job_id)
            await assert_signed_at(
                own_stack, transfer.job_id, max_fee=reserved_fee, tip=reserved_fee
            )
            assert sent.worst_case_wei <= sent.charge.amount_wei == reserved.charge.amount_wei
            assert not sent.charge.settled
            assert sent.sponsor.spent_wei == reserved.sponsor.spent_wei == sent.sponsor.funds_wei
            assert_totals_are_the_charge(sent)
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await settled_within(
        own_stack, transfer.job_id, reservation_wei=reserved.charge.amount_wei
    )
    assert_totals_are_the_charge(settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_one_signing_round_caps_its_sponsored_jobs_and_leaves_the_others_at_the_spike(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """One relayer key has, queued in a spike, a transfer its customer pays the gas of and
    two sponsored ones. One signing round signs the three: the sponsored ones at their
    reserved fees, the other at the spike as before (its gas is the operator's, its
    customer's fee fixed in the signed request). The round reads the reservations with the
    jobs: it sends as many statements as a round signing one unsponsored job alone, and none
    of them reads or locks a sponsor."""
    plain_sender, sponsored_sender = await two_senders_on_one_key(
        own_stack, test_issuer, deployer, contracts
    )
    worker = CountingSpikingWorker(own_stack.services, name="test-relayer")
    worker.spike = SPIKE
    try:
        [alone] = await queue_transfers(own_stack, [plain_sender], count=1)
        await tick_until_status(worker, own_stack, alone.job_id, RelayStatus.CONFIRMED)
        [statements_alone] = worker.signing_rounds

        [plain] = await queue_transfers(own_stack, [plain_sender], count=1)
        await sponsor_the_stacks_utility(own_stack)
        sponsored = await queue_transfers(own_stack, [sponsored_sender], count=2)
        reserved = [await rows_of(own_stack, transfer.job_id) for transfer in sponsored]
        with mining_paused(deployer):
            assert await worker.tick()
            assert len(worker.signing_rounds) == 2, "the three jobs took more than one round"
            statements_together = worker.signing_rounds[1]

            async with own_stack.services.db.session() as session:
                plain_job = await session.get_one(RelayTransaction, plain.job_id)
            assert plain_job.sponsor_id is None
            assert plain_job.status == RelayStatus.SUBMITTED
            await assert_signed_at(own_stack, plain.job_id, max_fee=SPIKE[0], tip=SPIKE[1])
            for rows in reserved:
                assert rows.job.sponsor_id is not None
                reserved_fee = reserved_fee_of(rows)
                assert reserved_fee < SPIKE[0]
                sent = await rows_of(own_stack, rows.job.id)
                assert sent.job.status == RelayStatus.SUBMITTED
                await assert_signed_at(
                    own_stack, rows.job.id, max_fee=reserved_fee, tip=reserved_fee
                )
                assert sent.charge.amount_wei == rows.charge.amount_wei
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    assert len(statements_together) == len(statements_alone), (
        statements_alone,
        statements_together,
    )
    assert not [s for s in statements_alone + statements_together if SPONSORS_TABLE.search(s)]
    settled = [
        await settled_within(own_stack, rows.job.id, reservation_wei=rows.charge.amount_wei)
        for rows in reserved
    ]
    # The sponsor's only charges, both settled: its total spent is their real cost.
    assert settled[-1].sponsor.spent_wei == sum(rows.charge.amount_wei for rows in settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_job_queued_again_is_capped_at_its_grown_reservation_not_its_quote(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A sponsored job whose bumped transaction reverted without executing is queued again
    (``track_submitted``) with its reservation as the bump grew it, unsettled: here that
    state is made directly, growing a queued job's reservation with the bump's own
    ``reserve_fee_bump``. Signed again in a spike, it goes out at what the grown reservation
    covers, above its quote's max fee and below the spike."""
    transfer = await a_sponsored_transfer(own_stack, test_issuer, deployer, contracts)
    quoted = await rows_of(own_stack, transfer.job_id)
    grown_fee = reserved_fee_of(quoted) * 3
    assert grown_fee < SPIKE[1]
    async with own_stack.services.db.session() as session:
        covered = await sponsorship.reserve_fee_bump(
            session,
            sponsor_id=quoted.sponsor.id,
            relay_transaction_id=transfer.job_id,
            gas_limit=quoted.job.gas_limit,
            max_fee_per_gas=grown_fee,
            min_max_fee_per_gas=grown_fee,
        )
    assert covered == grown_fee
    grown = await rows_of(own_stack, transfer.job_id)
    assert grown.job.status == RelayStatus.QUEUED
    assert grown.charge.amount_wei == grown.job.gas_limit * grown_fee
    assert_totals_are_the_charge(grown)

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    worker.spike = SPIKE
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, transfer.job_id, RelayStatus.SUBMITTED)
            await assert_signed_at(own_stack, transfer.job_id, max_fee=grown_fee, tip=grown_fee)
            sent = await rows_of(own_stack, transfer.job_id)
            assert sent.charge.amount_wei == grown.charge.amount_wei
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await settled_within(
        own_stack, transfer.job_id, reservation_wei=grown.charge.amount_wei
    )
    assert_totals_are_the_charge(settled)


@pytest.mark.parametrize("own_stack", BACKENDS, indirect=True)
async def test_a_job_sponsored_through_the_enrollment_path_is_capped_at_its_charge(
    own_stack: OwnStack,  # noqa: F811 (the fixture imported above)
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Enrollment, unenrollment and card-paid enrollment have no fee quote: their sponsor is
    charged the gas limit × the gas price read at enqueueing (``_gas_payment``), and the job
    queued by ``enqueue_calls``. Such a job (an OVPP transfer here, at the enrollment gas
    limit) signed in a spike goes out at its charge ÷ its gas limit, and settles within the
    charge, with the sponsor left with nothing beyond it."""
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    recipient = Account.create().address
    async with own_stack.services.db.session() as session:
        wallet = await session.get_one(Wallet, sender.wallet_id)
        first_nonce = await take_forwarder_nonces(session, wallet_id=wallet.id, count=1)
        sponsor = await session.get_one(Sponsor, sponsor_id)
        payment = await _gas_payment(
            session,
            services=own_stack.services,
            tenant_id=sponsor.tenant_id,
            customer_id=wallet.customer_id,
            gas_sponsored=True,
            gas_limit=ENROLL_TX_GAS,
            gas_fee=0,
        )
        job = await enqueue_calls(
            session,
            services=own_stack.services,
            wallet=wallet,
            customer_id=wallet.customer_id,
            first_nonce=first_nonce,
            calls=[
                Call(
                    target=contracts.ovpp_token,
                    data=erc20_transfer_data(recipient, OVPP),
                    gas=TRANSFER_CALL_GAS,
                )
            ],
            payment=payment,
            gas_limit=ENROLL_TX_GAS,
            kind="ENROLL",
            idempotency_key=f"first-signing-{uuid.uuid4().hex}",
            request_fingerprint="first-signing",
            display=Display(
                token="OVPP",
                token_address=contracts.ovpp_token,
                to_address=recipient,
                amount=OVPP,
            ),
            relayer_key_id=sender.relayer_key_id,
        )
    reserved = await rows_of(own_stack, job.id)
    assert reserved.charge.amount_wei == payment.sponsor_charge_wei
    assert reserved.job.gas_limit == ENROLL_TX_GAS
    async with own_stack.services.db.session() as session:
        await set_sponsor(session, sponsor_id, funds_wei=reserved.sponsor.spent_wei)
    reserved_fee = reserved_fee_of(reserved)
    assert reserved_fee < SPIKE[1]

    worker = SpikingWorker(own_stack.services, name="test-relayer")
    worker.spike = SPIKE
    try:
        with mining_paused(deployer):
            await tick_until_status(worker, own_stack, job.id, RelayStatus.SUBMITTED)
            await assert_signed_at(own_stack, job.id, max_fee=reserved_fee, tip=reserved_fee)
        await work_until_final(worker, own_stack)
    finally:
        await worker.rpc.close()

    settled = await settled_within(own_stack, job.id, reservation_wei=reserved.charge.amount_wei)
    assert_totals_are_the_charge(settled)
