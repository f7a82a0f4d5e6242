"""What customers and administrators read of rewards: a customer's rewards with their proofs,
a program's settlements, an event's results and its records as CSV (always the caller's own)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from programs.deps import ProgramServices
from programs.rewards import proofs, repository
from programs.rewards.merkle import leaf_hash
from programs.rewards.models import ContributionRecord, RewardSettlement
from programs.vtn.events import end_of, program_of_utility
from programs.vtn.models import DrEvent


@dataclass(frozen=True)
class RewardView:
    record: ContributionRecord
    settlement: RewardSettlement
    event: DrEvent
    leaf: bytes
    siblings: list[bytes]


async def customer_rewards(
    services: ProgramServices,
    session: AsyncSession,
    *,
    customer_id: str,
    first: int,
    after: tuple[datetime, str] | None,
) -> list[RewardView]:
    """The customer's contribution records, newest first, with each leaf's proof (one more
    than ``first`` when there is a next page)."""
    rows = await repository.rewards_of_customer(session, customer_id, first=first + 1, after=after)
    views = []
    for record, settlement, event in rows:
        tree = await proofs.tree_of(services, settlement)
        leaf = tree.leaves[record.leaf_index]
        views.append(
            RewardView(record, settlement, event, leaf_hash(leaf), tree.proof_of(record.leaf_index))
        )
    return views


async def program_settlements(
    session: AsyncSession, *, tenant_id: str, program_row_id: str, first: int
) -> list[tuple[RewardSettlement, DrEvent]]:
    await program_of_utility(session, tenant_id=tenant_id, program_row_id=program_row_id)
    settlements = await repository.settlements_of_program(session, program_row_id, first=first)
    return [(s, await session.get_one(DrEvent, s.event_id)) for s in settlements]


@dataclass(frozen=True)
class EventResult:
    event: DrEvent
    settlement: RewardSettlement | None
    records: list[ContributionRecord]

    @property
    def asked_kw(self) -> float:
        return round(sum(r.asked_kw for r in self.records), 4)

    @property
    def delivered_kw(self) -> float:
        return round(sum(r.average_kw for r in self.records), 4)

    @property
    def delivered_wh(self) -> int:
        return sum(r.delivered_wh for r in self.records)

    @property
    def paid(self) -> int:
        return sum(r.amount for r in self.records if r.claim_status == "CONFIRMED")

    @property
    def owed(self) -> int:
        return sum(r.amount for r in self.records)


async def event_result(session: AsyncSession, *, tenant_id: str, event_id: str) -> EventResult:
    event = await session.get(DrEvent, event_id)
    if event is None or event.tenant_id != tenant_id:
        raise NotFound("no such event")
    settlement = await repository.settlement_of_event(session, event_id)
    records = list(await repository.records_of(session, settlement.id)) if settlement else []
    return EventResult(event, settlement, records)


CSV_COLUMNS = (
    "event_id", "event_start", "event_end", "enrollment_id", "device_id", "recipient", "response",
    "baseline_method", "baseline_kw", "asked_kw", "average_kw", "delivered_wh",
    "performance_bps", "expected_readings", "received_readings", "quality_bps", "gaps",
    "longest_gap_seconds", "online_seconds", "flags", "event_reward", "enrollment_bonus",
    "amount", "leaf_index", "claim_status", "claim_tx_hash",
)  # fmt: skip


def records_csv(result: EventResult) -> str:
    """The event's contribution records, one row each; amounts in base units (18 decimals)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    start, end = result.event.start.isoformat(), end_of(result.event).isoformat()
    for r in result.records:
        writer.writerow(
            [
                r.event_id, start, end, r.enrollment_id, r.device_id, r.recipient, r.response,
                r.baseline_method, r.baseline_kw, r.asked_kw, r.average_kw, r.delivered_wh,
                r.performance_bps, r.expected_readings, r.received_readings, r.quality_bps,
                r.gaps, r.longest_gap_seconds, r.online_seconds, " ".join(r.flags),
                r.event_reward, r.enrollment_bonus, r.amount, r.leaf_index, r.claim_status,
                r.claim_tx_hash or "",
            ]
        )  # fmt: skip
    return out.getvalue()
