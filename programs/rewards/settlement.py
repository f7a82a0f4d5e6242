"""Settling an event on chain, exactly once (docs/rewards.md, "Settlement").

A ``reward_settlements`` row is a persisted state machine: COMPUTED → PUBLISHING (the sponsor
wallet's one atomic job ``[approve, publish]``: the root and its funding) → CLAIMING (claim
batches, ``claimMany`` for up to ``OVPP_REWARDS_CLAIMS_PER_TRANSACTION`` leaves each) →
SETTLED; UNFUNDED while the sponsor's wallet lacks the total (nothing published, nothing
paid), back to publishing once it has it. Every step is one transaction that moves the row and
queues the step's job together, with an idempotency key of its own, so a crash anywhere
resumes where the database says; the contract pays a leaf once whatever is sent twice. The
gas is charged to the utility's sponsorship. The onramp processor's follower
``advance_reward_settlements`` moves settlements on and starts those of ended events."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.errors import InvalidInput
from identity.models import Tenant
from programs.admin import utility_wallet
from programs.deps import ProgramServices
from programs.payment import approve_call, available_ovpp, gas_payment, ovpp_display
from programs.rewards import proofs, repository
from programs.rewards.distributor import RewardsDistributor, distributor_of
from programs.rewards.models import ClaimBatch, ClaimStatus, RewardSettlement, SettlementStatus
from programs.rewards.records import compute_settlement
from programs.vtn.models import DrEvent
from relayer.errors import SponsorRefused
from relayer.jobs import GasPayment, queue_call, reserve_nonces
from relayer.models import FINAL_STATUSES, JobKind, RelayStatus, RelayTransaction
from wallet.models import Wallet

logger = logging.getLogger(__name__)

MAX_PUBLISH_ATTEMPTS = 3
FORWARD_OVERHEAD_GAS = 100_000
ERROR_LENGTH = 500


async def settle_event(
    services: ProgramServices, *, tenant_id: str, event_id: str
) -> RewardSettlement:
    """The utility's event settled (computed and started now if it was not): the same
    settlement however often it is asked."""
    async with services.db.session() as session:
        event = await session.get(DrEvent, event_id)
    if event is None or event.tenant_id != tenant_id:
        raise InvalidInput("no such event", field="eventId")
    settlement = await compute_settlement(services, event)
    await advance(services, settlement.id)
    async with services.db.session() as session:
        return await session.get_one(RewardSettlement, settlement.id)


async def settle_due_events(services: ProgramServices) -> bool:
    """Compute the settlements of events that ended more than the grace period ago."""
    grace = timedelta(minutes=services.settings.rewards_grace_minutes)
    async with services.db.session() as session:
        due = await repository.unsettled_ended_events(session, ended_before=utc_now() - grace)
    for event in due:
        await compute_settlement(services, event)
    return bool(due)


async def advance_reward_settlements(services: ProgramServices) -> bool:
    """The processor's follower: start due settlements, move every open one on."""
    moved = False
    if services.settings.rewards_auto_settle:
        try:
            moved = await settle_due_events(services)
        except Exception:
            logger.exception("rewards: could not compute the settlements of ended events")
    async with services.db.session() as session:
        open_ids = await repository.open_settlement_ids(session)
    for settlement_id in open_ids:
        try:
            moved = await advance(services, settlement_id) or moved
        except Exception:  # one settlement's trouble (the node, say) must not stop the others
            logger.exception("reward settlement %s: could not advance it", settlement_id)
    return moved


async def advance(services: ProgramServices, settlement_id: str) -> bool:
    """One step of the settlement, whatever its state; whether it moved."""
    async with services.db.session() as session:
        settlement = await session.get(RewardSettlement, settlement_id)
    if settlement is None:
        return False
    if settlement.status in (SettlementStatus.COMPUTED, SettlementStatus.UNFUNDED):
        return await _publish(services, settlement)
    if settlement.status == SettlementStatus.PUBLISHING:
        return await _follow_publish(services, settlement)
    if settlement.status == SettlementStatus.CLAIMING:
        followed = await _follow_batches(services, settlement)
        queued = await _queue_batches(services, settlement)
        return await _finish(services, settlement) or followed or queued
    return False


# -- publishing the root ------------------------------------------------------------------------


async def _sponsor_wallet(services: ProgramServices, settlement: RewardSettlement) -> Wallet:
    async with services.db.session() as session:
        tenant = await session.get_one(Tenant, settlement.tenant_id)
    return await utility_wallet(services, tenant)


async def _publish(services: ProgramServices, settlement: RewardSettlement) -> bool:
    distributor = distributor_of(services.chain)
    published = await distributor.distribution(bytes.fromhex(settlement.chain_event_id[2:]))
    if published is not None:  # it landed already (the job's outcome was not recorded)
        return await _move(services, settlement, to=SettlementStatus.CLAIMING)
    wallet = await _sponsor_wallet(services, settlement)
    calls = [
        distributor.publish(
            event_ref=bytes.fromhex(settlement.event_ref[2:]),
            root=bytes.fromhex(settlement.root[2:]),
            total=settlement.total_reward,
            leaf_count=settlement.leaf_count,
        )
    ]
    if settlement.total_reward:
        spender = distributor.address
        calls.insert(0, approve_call(services, spender=spender, amount=settlement.total_reward))
    try:
        async with services.db.session() as session:
            locked = await repository.lock_settlement(
                session, settlement.id, status=settlement.status
            )
            if locked is None:
                return False
            first_nonce = await reserve_nonces(
                session, wallet_id=wallet.id, calls=calls, payment=_SPONSORED
            )
            available = await available_ovpp(session, services, wallet)
            if available < locked.total_reward:
                await session.rollback()  # gives the nonces back
                return await _unfunded(services, settlement, available=available)
            gas_limit = sum(call.gas for call in calls) + FORWARD_OVERHEAD_GAS
            payment = await gas_payment(
                session, services=services, tenant_id=locked.tenant_id,
                customer_id=wallet.customer_id, gas_sponsored=True, gas_limit=gas_limit,
                gas_fee=0, sponsored_program=True,
            )  # fmt: skip
            job = await queue_call(
                session, services=services, wallet=wallet, customer_id=wallet.customer_id,
                calls=calls, payment=payment, gas_limit=gas_limit,
                kind=JobKind.REWARD_SETTLEMENT,
                idempotency_key=f"reward-publish:{locked.id}:{locked.publish_attempts}",
                request_fingerprint=locked.id,
                display=ovpp_display(services, to_address=distributor.address,
                                     amount=locked.total_reward),
                first_nonce=first_nonce,
            )  # fmt: skip
            locked.status = SettlementStatus.PUBLISHING
            locked.publish_relay_transaction_id = job.id
            locked.publish_attempts += 1
            locked.error = None
            locked.updated_at = utc_now()
            session.add(locked)
    except SponsorRefused as refused:
        await _note(services, settlement.id, f"the utility's gas sponsorship refused: {refused}")
        return False
    return True


_SPONSORED = GasPayment()
"""The shape of a sponsored job's payment: no fee call, so one nonce per call."""


async def _unfunded(
    services: ProgramServices, settlement: RewardSettlement, *, available: int
) -> bool:
    message = (
        f"the sponsor wallet {settlement.sponsor_address} can spend {available} base units of "
        f"OVPP; the event's rewards need {settlement.total_reward}"
    )
    async with services.db.session() as session:
        locked = await repository.lock_settlement(session, settlement.id, status=settlement.status)
        if locked is None:
            return False
        moved = locked.status != SettlementStatus.UNFUNDED
        locked.status = SettlementStatus.UNFUNDED
        locked.error = message
        locked.updated_at = utc_now()
        session.add(locked)
    return moved


async def _follow_publish(services: ProgramServices, settlement: RewardSettlement) -> bool:
    async with services.db.session() as session:
        job = await _job(session, settlement.publish_relay_transaction_id)
    if job is None or job.status not in FINAL_STATUSES:
        return False
    if job.status == RelayStatus.CONFIRMED:
        return await _move(
            services, settlement, to=SettlementStatus.CLAIMING, publish_tx_hash=job.tx_hash
        )
    published = await distributor_of(services.chain).distribution(
        bytes.fromhex(settlement.chain_event_id[2:])
    )
    if published is not None:
        return await _move(services, settlement, to=SettlementStatus.CLAIMING)
    error = (job.error or f"the publish transaction ended {job.status}")[:ERROR_LENGTH]
    give_up = settlement.publish_attempts >= MAX_PUBLISH_ATTEMPTS
    target = SettlementStatus.FAILED if give_up else SettlementStatus.COMPUTED
    return await _move(services, settlement, to=target, error=error)


async def _job(session: AsyncSession, job_id: str | None) -> RelayTransaction | None:
    return await session.get(RelayTransaction, job_id) if job_id else None


async def _move(
    services: ProgramServices,
    settlement: RewardSettlement,
    *,
    to: SettlementStatus,
    error: str | None = None,
    publish_tx_hash: str | None = None,
) -> bool:
    async with services.db.session() as session:
        locked = await repository.lock_settlement(session, settlement.id, status=settlement.status)
        if locked is None:
            return False
        locked.status = to
        locked.error = error
        if publish_tx_hash:
            locked.publish_tx_hash = publish_tx_hash
        if to == SettlementStatus.SETTLED:
            locked.settled_at = utc_now()
        locked.updated_at = utc_now()
        session.add(locked)
    settlement.status = to
    return True


async def _note(services: ProgramServices, settlement_id: str, error: str) -> None:
    async with services.db.session() as session:
        settlement = await session.get(RewardSettlement, settlement_id)
        if settlement is not None:
            settlement.error = error[:ERROR_LENGTH]
            settlement.updated_at = utc_now()
            session.add(settlement)


# -- claims -------------------------------------------------------------------------------------


async def _queue_batches(services: ProgramServices, settlement: RewardSettlement) -> bool:
    """Queue claim batches for every record not in one, one transaction per batch."""
    wallet = await _sponsor_wallet(services, settlement)
    tree = await proofs.tree_of(services, settlement)
    distributor = distributor_of(services.chain)
    per_batch = services.settings.rewards_claims_per_transaction
    queued = False
    while True:
        try:
            async with services.db.session() as session:
                if not await _queue_one_batch(
                    session, services, settlement=settlement, wallet=wallet, tree=tree,
                    distributor=distributor, per_batch=per_batch,
                ):  # fmt: skip
                    return queued
        except SponsorRefused as refused:
            await _note(
                services, settlement.id, f"the utility's gas sponsorship refused: {refused}"
            )
            return queued
        queued = True


async def _queue_one_batch(
    session: AsyncSession,
    services: ProgramServices,
    *,
    settlement: RewardSettlement,
    wallet: Wallet,
    tree: proofs.SettlementTree,
    distributor: RewardsDistributor,
    per_batch: int,
) -> bool:
    locked = await repository.lock_settlement(
        session, settlement.id, status=SettlementStatus.CLAIMING
    )
    if locked is None:
        return False
    records = await repository.unbatched_records(session, settlement.id, limit=per_batch)
    if not records:
        return False
    leaves = [tree.leaves[r.leaf_index] for r in records]
    call = distributor.claim_many(
        event_id=bytes.fromhex(settlement.chain_event_id[2:]),
        leaves=leaves,
        proofs=[tree.proof_of(r.leaf_index) for r in records],
    )
    number = await repository.batch_count(session, settlement.id)
    first_nonce = await reserve_nonces(
        session, wallet_id=wallet.id, calls=[call], payment=_SPONSORED
    )
    gas_limit = call.gas + FORWARD_OVERHEAD_GAS
    payment = await gas_payment(
        session, services=services, tenant_id=settlement.tenant_id,
        customer_id=wallet.customer_id, gas_sponsored=True, gas_limit=gas_limit, gas_fee=0,
        sponsored_program=True,
    )  # fmt: skip
    job = await queue_call(
        session, services=services, wallet=wallet, customer_id=wallet.customer_id, calls=[call],
        payment=payment, gas_limit=gas_limit, kind=JobKind.REWARD_SETTLEMENT,
        idempotency_key=f"reward-claims:{settlement.id}:{number}",
        request_fingerprint=settlement.id,
        display=ovpp_display(services, to_address=distributor.address, amount=0),
        first_nonce=first_nonce,
    )  # fmt: skip
    batch = ClaimBatch(settlement_id=settlement.id, number=number, relay_transaction_id=job.id)
    session.add(batch)
    for record in records:
        record.claim_batch_id = batch.id
        session.add(record)
    locked.updated_at = utc_now()
    session.add(locked)
    return True


async def _follow_batches(services: ProgramServices, settlement: RewardSettlement) -> bool:
    async with services.db.session() as session:
        batches = await repository.open_batches(session, settlement.id)
        jobs = {b.id: await _job(session, b.relay_transaction_id) for b in batches}
    moved = False
    for batch in batches:
        job = jobs[batch.id]
        if job is None or job.status not in FINAL_STATUSES:
            continue
        await _end_batch(services, settlement, batch=batch, job=job)
        moved = True
    return moved


async def _end_batch(
    services: ProgramServices,
    settlement: RewardSettlement,
    *,
    batch: ClaimBatch,
    job: RelayTransaction,
) -> None:
    """A confirmed batch confirms its records; a failed one confirms those the chain has
    settled anyway and hands the others to a new batch (a second failure fails them)."""
    settled: set[str] = set()
    if job.status != RelayStatus.CONFIRMED:
        async with services.db.session() as session:
            records = await repository.records_of_batch(session, batch.id)
        distributor = distributor_of(services.chain)
        event_id = bytes.fromhex(settlement.chain_event_id[2:])
        for record in records:
            if await distributor.is_claimed(event_id, record.leaf_index):
                settled.add(record.id)
    async with services.db.session() as session:
        locked = await repository.lock_settlement(
            session, settlement.id, status=SettlementStatus.CLAIMING
        )
        batch = await session.get_one(ClaimBatch, batch.id)
        if locked is None or batch.status != ClaimStatus.PENDING:
            return
        if job.status == RelayStatus.CONFIRMED:
            await repository.mark_batch(
                session, batch, status=ClaimStatus.CONFIRMED, tx_hash=job.tx_hash
            )
            return
        batch.status = ClaimStatus.FAILED
        session.add(batch)
        error = (job.error or f"the claim transaction ended {job.status}")[:ERROR_LENGTH]
        for record in await repository.records_of_batch(session, batch.id):
            if record.id in settled:
                record.claim_status = ClaimStatus.CONFIRMED
            elif record.claim_error is not None:
                record.claim_status = ClaimStatus.FAILED
                record.claim_error = error
            else:
                record.claim_batch_id = None
                record.claim_error = error
            session.add(record)


async def _finish(services: ProgramServices, settlement: RewardSettlement) -> bool:
    async with services.db.session() as session:
        pending = await repository.pending_records(session, settlement.id)
    if pending:
        return False
    return await _move(services, settlement, to=SettlementStatus.SETTLED)


async def settlement_of_event(services: ProgramServices, event_id: str) -> RewardSettlement:
    async with services.db.session() as session:
        settlement = await repository.settlement_of_event(session, event_id)
    if settlement is None:
        raise InvalidInput("this event is not settled yet", field="eventId")
    return settlement
