"""SQL of rewards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from programs.models import Device, Enrollment
from programs.rewards.models import (
    OPEN_SETTLEMENTS,
    ClaimBatch,
    ClaimStatus,
    ContributionRecord,
    RewardRule,
    RewardSettlement,
    SettlementStatus,
)
from programs.vtn.models import DeviceReading, DrEvent, EventDelivery, EventStatus, Ven
from wallet.models import Wallet

IN_CHUNK = 500
"""Ids per ``IN (…)`` list: well under SQLite's bound-parameter limit."""


@dataclass(frozen=True)
class Dispatched:
    """An enrollment an event was sent to, with what settling it needs."""

    delivery: EventDelivery
    enrollment: Enrollment
    device: Device
    recipient: str


async def rule_of(session: AsyncSession, program_row_id: str) -> RewardRule | None:
    return await session.get(RewardRule, program_row_id)


async def settlement_of_event(session: AsyncSession, event_id: str) -> RewardSettlement | None:
    statement = select(RewardSettlement).where(RewardSettlement.event_id == event_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def dispatched(session: AsyncSession, event_id: str) -> list[Dispatched]:
    """Every enrollment the event was sent to, in a stable order (the leaves' order)."""
    statement = (
        select(EventDelivery, Enrollment, Device, Wallet.address)
        .join(Ven, Ven.id == EventDelivery.ven_row_id)
        .join(Enrollment, Enrollment.id == Ven.enrollment_id)
        .join(Device, Device.id == Enrollment.device_row_id)
        .join(Wallet, Wallet.customer_id == Enrollment.customer_id)
        .where(EventDelivery.event_id == event_id)
        .order_by(Enrollment.id)
    )
    return [
        Dispatched(d, e, dev, address) for d, e, dev, address in await session.execute(statement)
    ]


async def power_readings(
    session: AsyncSession, enrollment_ids: Sequence[str], *, since: datetime, until: datetime
) -> dict[str, list[tuple[datetime, float, str | None, str | None]]]:
    """Each enrollment's ``power_real`` readings in [since, until), oldest first."""
    readings: dict[str, list[tuple[datetime, float, str | None, str | None]]] = {}
    table = DeviceReading.__table__
    for i in range(0, len(enrollment_ids), IN_CHUNK):
        statement = (
            select(
                table.c.enrollment_id, table.c.timestamp, table.c.value, table.c.unit, table.c.scale
            )
            .where(
                table.c.enrollment_id.in_(enrollment_ids[i : i + IN_CHUNK]),
                table.c.measurement == "power_real",
                table.c.timestamp >= since,
                table.c.timestamp < until,
            )
            .order_by(table.c.enrollment_id, table.c.timestamp)
        )
        for enrollment_id, at, value, unit, scale in await session.execute(statement):
            readings.setdefault(enrollment_id, []).append((at, value, unit, scale))
    return readings


async def bonuses_paid(session: AsyncSession, enrollment_ids: Sequence[str]) -> set[str]:
    paid: set[str] = set()
    column = ContributionRecord.bonus_enrollment_id
    for i in range(0, len(enrollment_ids), IN_CHUNK):
        statement = select(column).where(column.in_(enrollment_ids[i : i + IN_CHUNK]))
        paid.update(row for row in (await session.execute(statement)).scalars())
    return paid


async def insert_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    for i in range(0, len(rows), IN_CHUNK):
        await session.execute(insert(ContributionRecord.__table__), list(rows[i : i + IN_CHUNK]))


async def records_of(session: AsyncSession, settlement_id: str) -> Sequence[ContributionRecord]:
    statement = (
        select(ContributionRecord)
        .where(ContributionRecord.settlement_id == settlement_id)
        .order_by(ContributionRecord.leaf_index)
    )
    return (await session.execute(statement)).scalars().all()


async def lock_settlement(
    session: AsyncSession, settlement_id: str, *, status: str
) -> RewardSettlement | None:
    """The settlement, locked, if it is still in ``status`` (else another process moved it)."""
    statement = (
        select(RewardSettlement)
        .where(RewardSettlement.id == settlement_id, RewardSettlement.status == status)
        .with_for_update()
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def open_settlement_ids(session: AsyncSession) -> list[str]:
    statement = (
        select(RewardSettlement.id)
        .where(RewardSettlement.status.in_(OPEN_SETTLEMENTS))
        .order_by(RewardSettlement.created_at)
    )
    return list((await session.execute(statement)).scalars())


async def unsettled_ended_events(
    session: AsyncSession, *, ended_before: datetime, limit: int = 20
) -> list[DrEvent]:
    """ACTIVE events with no settlement whose end is before ``ended_before`` (an event's end is
    computed in Python, as in the program server's repository)."""
    statement = (
        select(DrEvent)
        .outerjoin(RewardSettlement, RewardSettlement.event_id == DrEvent.id)
        .where(
            RewardSettlement.id.is_(None),
            DrEvent.status == EventStatus.ACTIVE,
            DrEvent.start < ended_before,
        )
        .order_by(DrEvent.start)
    )
    events = (await session.execute(statement)).scalars()
    due = [
        e
        for e in events
        if e.start.timestamp() + e.duration_minutes * 60 <= ended_before.timestamp()
    ]
    return due[:limit]


async def unbatched_records(
    session: AsyncSession, settlement_id: str, *, limit: int
) -> Sequence[ContributionRecord]:
    statement = (
        select(ContributionRecord)
        .where(
            ContributionRecord.settlement_id == settlement_id,
            ContributionRecord.claim_status == ClaimStatus.PENDING,
            ContributionRecord.claim_batch_id.is_(None),
        )
        .order_by(ContributionRecord.leaf_index)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


async def open_batches(session: AsyncSession, settlement_id: str) -> Sequence[ClaimBatch]:
    statement = select(ClaimBatch).where(
        ClaimBatch.settlement_id == settlement_id, ClaimBatch.status == ClaimStatus.PENDING
    )
    return (await session.execute(statement)).scalars().all()


async def batch_count(session: AsyncSession, settlement_id: str) -> int:
    statement = select(func.count()).where(ClaimBatch.settlement_id == settlement_id)
    return int((await session.execute(statement)).scalar_one())


async def records_of_batch(session: AsyncSession, batch_id: str) -> Sequence[ContributionRecord]:
    statement = select(ContributionRecord).where(ContributionRecord.claim_batch_id == batch_id)
    return (
        (await session.execute(statement.order_by(ContributionRecord.leaf_index))).scalars().all()
    )


async def pending_records(session: AsyncSession, settlement_id: str) -> int:
    statement = select(func.count()).where(
        ContributionRecord.settlement_id == settlement_id,
        ContributionRecord.claim_status == ClaimStatus.PENDING,
    )
    return int((await session.execute(statement)).scalar_one())


async def mark_batch(
    session: AsyncSession, batch: ClaimBatch, *, status: str, tx_hash: str | None
) -> None:
    """The batch and its records CONFIRMED (with the claim's transaction)."""
    batch.status = status
    session.add(batch)
    await session.execute(
        update(ContributionRecord)
        .where(ContributionRecord.claim_batch_id == batch.id)
        .values(claim_status=status, claim_tx_hash=tx_hash)
    )


async def release_records(session: AsyncSession, record_ids: Sequence[str]) -> None:
    """Back to no batch: claimed again by the next batch."""
    await session.execute(
        update(ContributionRecord)
        .where(ContributionRecord.id.in_(record_ids))
        .values(claim_batch_id=None)
    )


async def settlements_of_program(
    session: AsyncSession, program_row_id: str, *, first: int
) -> Sequence[RewardSettlement]:
    statement = (
        select(RewardSettlement)
        .where(RewardSettlement.program_row_id == program_row_id)
        .order_by(RewardSettlement.created_at.desc())
        .limit(first)
    )
    return (await session.execute(statement)).scalars().all()


async def rewards_of_customer(
    session: AsyncSession, customer_id: str, *, first: int, after: tuple[datetime, str] | None
) -> Sequence[tuple[ContributionRecord, RewardSettlement, DrEvent]]:
    """The customer's records, newest first, keyset-paged by (created_at, id)."""
    statement = (
        select(ContributionRecord, RewardSettlement, DrEvent)
        .join(RewardSettlement, RewardSettlement.id == ContributionRecord.settlement_id)
        .join(DrEvent, DrEvent.id == ContributionRecord.event_id)
        .where(ContributionRecord.customer_id == customer_id)
        .order_by(ContributionRecord.created_at.desc(), ContributionRecord.id.desc())
        .limit(first)
    )
    if after is not None:
        at, record_id = after
        statement = statement.where(
            (ContributionRecord.created_at < at)
            | ((ContributionRecord.created_at == at) & (ContributionRecord.id < record_id))
        )
    return [tuple(row) for row in await session.execute(statement)]  # type: ignore[misc]


async def total_earned(session: AsyncSession, customer_id: str) -> int:
    """Summed in Python: amounts are exact text in SQLite, where SUM would go through REAL."""
    statement = select(ContributionRecord.amount).where(
        ContributionRecord.customer_id == customer_id,
        ContributionRecord.claim_status == ClaimStatus.CONFIRMED,
    )
    return sum((await session.execute(statement)).scalars())


def is_open(settlement: RewardSettlement) -> bool:
    return settlement.status in OPEN_SETTLEMENTS and settlement.status != SettlementStatus.SETTLED
