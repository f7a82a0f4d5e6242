"""Rewards (docs/rewards.md): the customer's ``viewer { rewards totalEarned }`` and each
device's on-chain ``reputation``; the administrator's ``settlements``, ``eventResults``,
``contributionsCsv`` and ``settleEvent``."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql.common import PageInfo, decode_cursor, encode_cursor, require_page_size
from api.graphql.failures import InvalidInput, typed_failures
from chain.tokens import format_units
from identity.principal import Scope
from programs.rewards import repository, views
from programs.rewards.distributor import distributor_of
from programs.rewards.models import ContributionRecord, RewardSettlement
from programs.rewards.settlement import settle_event as settle
from programs.vtn.events import end_of
from programs.vtn.models import DrEvent

Info = strawberry.Info[RequestContext, None]
OVPP_DECIMALS = 18


@strawberry.enum(description="PENDING until the recipient's claim is confirmed on chain.")
class RewardStatus(Enum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


@strawberry.enum(description="Where an event's settlement is (docs/rewards.md).")
class SettlementStatus(Enum):
    COMPUTED = "COMPUTED"
    UNFUNDED = strawberry.enum_value(
        "UNFUNDED", description="The sponsor's wallet lacks the total: nothing published or paid."
    )
    PUBLISHING = "PUBLISHING"
    CLAIMING = "CLAIMING"
    SETTLED = "SETTLED"
    FAILED = "FAILED"


@strawberry.type(description="The event a reward or settlement is for.")
class RewardEvent:
    id: strawberry.ID
    start: datetime
    end: datetime

    @classmethod
    def from_row(cls, event: DrEvent) -> RewardEvent:
        return cls(id=strawberry.ID(event.id), start=event.start, end=end_of(event))


@strawberry.type(description="What one device did in one event, by the program's rule.")
class Contribution:
    enrollment_id: strawberry.ID
    response: str = strawberry.field(description="OPT_IN, OPT_OUT or NONE.")
    baseline_method: str
    baseline_kw: float
    asked_kw: float
    average_kw: float = strawberry.field(description="Mean reduction below the baseline.")
    delivered_wh: int
    performance: float = strawberry.field(description="Average kW over asked kW, 0 to 1.")
    quality: float = strawberry.field(description="Share of the expected readings received.")
    gaps: int
    online_seconds: int
    flags: list[str]
    amount: str = strawberry.field(description="OVPP: the event's reward plus any bonus.")

    @classmethod
    def from_row(cls, r: ContributionRecord) -> Contribution:
        return cls(
            enrollment_id=strawberry.ID(r.enrollment_id), response=r.response,
            baseline_method=r.baseline_method, baseline_kw=r.baseline_kw, asked_kw=r.asked_kw,
            average_kw=r.average_kw, delivered_wh=r.delivered_wh,
            performance=r.performance_bps / 10_000, quality=r.quality_bps / 10_000, gaps=r.gaps,
            online_seconds=r.online_seconds, flags=list(r.flags),
            amount=format_units(r.amount, OVPP_DECIMALS),
        )  # fmt: skip


@strawberry.type(description="A reward's Merkle proof: check it with RewardsDistributor.verify.")
class RewardProof:
    root: str
    leaf: str
    siblings: list[str]
    event_id: str = strawberry.field(description="The event's id on chain (bytes32).")
    index: int
    contract: str


@strawberry.type(description="An event's reward to the customer (the feed's REWARD).")
class Reward:
    id: strawberry.ID
    amount: str = strawberry.field(description="OVPP.")
    status: RewardStatus
    failure_reason: str | None
    event: RewardEvent
    contribution: Contribution
    proof: RewardProof
    settlement_tx: str | None = strawberry.field(description="The root's publish transaction.")
    claim_tx: str | None
    created_at: datetime


@strawberry.type
class RewardEdge:
    cursor: str
    node: Reward


@strawberry.type
class RewardConnection:
    edges: list[RewardEdge]
    page_info: PageInfo
    total_earned: str = strawberry.field(description="OVPP of every CONFIRMED reward.")


@strawberry.type(description="A device's record on chain (RewardsDistributor.reputationOf).")
class DeviceReputation:
    events_dispatched: int
    events_delivered: int
    delivered_wh: int
    performance_bps: int = strawberry.field(description="Average over dispatched events.")


async def viewer_rewards(
    info: Info, *, customer_id: str, first: int, after: str | None
) -> RewardConnection:
    require_page_size(first)
    services = info.context.services
    contract = distributor_of(services.chain).address
    async with info.context.read_session() as session:
        rows = await views.customer_rewards(
            services, session, customer_id=customer_id, first=first,
            after=decode_cursor(after) if after else None,
        )  # fmt: skip
        earned = await repository.total_earned(session, customer_id)
    edges = [
        RewardEdge(
            cursor=encode_cursor(created_at=v.record.created_at, row_id=v.record.id),
            node=_reward(v, contract),
        )
        for v in rows[:first]
    ]
    return RewardConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
        total_earned=format_units(earned, OVPP_DECIMALS),
    )


def _reward(view: views.RewardView, contract: str) -> Reward:
    r, s = view.record, view.settlement
    return Reward(
        id=strawberry.ID(r.id), amount=format_units(r.amount, OVPP_DECIMALS),
        status=RewardStatus(r.claim_status), failure_reason=r.claim_error if
        r.claim_status == "FAILED" else None, event=RewardEvent.from_row(view.event),
        contribution=Contribution.from_row(r),
        proof=RewardProof(
            root=s.root, leaf="0x" + view.leaf.hex(),
            siblings=["0x" + x.hex() for x in view.siblings],
            event_id=s.chain_event_id, index=r.leaf_index, contract=contract,
        ),
        settlement_tx=s.publish_tx_hash, claim_tx=r.claim_tx_hash, created_at=r.created_at,
    )  # fmt: skip


async def viewer_total_earned(info: Info, customer_id: str) -> str:
    async with info.context.read_session() as session:
        return format_units(await repository.total_earned(session, customer_id), OVPP_DECIMALS)


async def device_reputation(info: Info, device_id: str) -> DeviceReputation:
    record = await distributor_of(info.context.services.chain).reputation(
        bytes.fromhex(device_id.removeprefix("0x"))
    )
    return DeviceReputation(
        events_dispatched=record.events_dispatched,
        events_delivered=record.events_delivered,
        delivered_wh=record.delivered_wh,
        performance_bps=record.performance_bps,
    )


# -- the administrator's ---------------------------------------------------------------------------


@strawberry.type(description="An event's settlement on chain (docs/rewards.md).")
class Settlement:
    id: strawberry.ID
    event: RewardEvent
    status: SettlementStatus
    total_reward: str = strawberry.field(description="OVPP.")
    recipients: int = strawberry.field(description="Leaves that pay something.")
    leaves: int
    root: str
    tx: str | None = strawberry.field(description="The publish (and funding) transaction.")
    chain_event_id: str
    baseline_method: str
    error: str | None
    created_at: datetime
    settled_at: datetime | None

    @classmethod
    def from_rows(cls, s: RewardSettlement, event: DrEvent) -> Settlement:
        return cls(
            id=strawberry.ID(s.id), event=RewardEvent.from_row(event),
            status=SettlementStatus(s.status),
            total_reward=format_units(s.total_reward, OVPP_DECIMALS), recipients=s.recipients,
            leaves=s.leaf_count, root=s.root, tx=s.publish_tx_hash,
            chain_event_id=s.chain_event_id, baseline_method=s.baseline_method, error=s.error,
            created_at=s.created_at, settled_at=s.settled_at,
        )  # fmt: skip


@strawberry.type(description="An event's figures: asked, delivered, paid; with its records.")
class EventResult:
    event: RewardEvent
    settlement: Settlement | None
    asked_kw: float
    delivered_kw: float
    delivered_wh: int
    owed: str = strawberry.field(description="OVPP the records' leaves pay.")
    paid: str = strawberry.field(description="OVPP whose claims are confirmed.")
    contributions: list[Contribution]


async def admin_settlements(
    info: Info, tenant_id: str, program_id: strawberry.ID, first: int
) -> list[Settlement]:
    require_page_size(first)
    async with info.context.read_session() as session:
        rows = await views.program_settlements(
            session, tenant_id=tenant_id, program_row_id=str(program_id), first=first
        )
    return [Settlement.from_rows(s, e) for s, e in rows]


async def admin_event_result(info: Info, tenant_id: str, event_id: strawberry.ID) -> EventResult:
    async with info.context.read_session() as session:
        result = await views.event_result(session, tenant_id=tenant_id, event_id=str(event_id))
    return EventResult(
        event=RewardEvent.from_row(result.event),
        settlement=Settlement.from_rows(result.settlement, result.event)
        if result.settlement
        else None,
        asked_kw=result.asked_kw, delivered_kw=result.delivered_kw,
        delivered_wh=result.delivered_wh, owed=format_units(result.owed, OVPP_DECIMALS),
        paid=format_units(result.paid, OVPP_DECIMALS),
        contributions=[Contribution.from_row(r) for r in result.records],
    )  # fmt: skip


async def admin_contributions_csv(info: Info, tenant_id: str, event_id: strawberry.ID) -> str:
    async with info.context.read_session() as session:
        result = await views.event_result(session, tenant_id=tenant_id, event_id=str(event_id))
    return views.records_csv(result)


SettleEventResult = Annotated[Settlement | InvalidInput, strawberry.union("SettleEventResult")]


@typed_failures(SettleEventResult)
async def settle_event(info: Info, event_id: strawberry.ID) -> SettleEventResult:  # type: ignore[valid-type]
    principal = await info.context.principal()
    principal.require(Scope.UTILITY_ADMIN)
    services = info.context.services
    settlement = await settle(services, tenant_id=principal.tenant_id, event_id=str(event_id))
    async with info.context.read_session() as session:
        event = await session.get_one(DrEvent, settlement.event_id)
    return Settlement.from_rows(settlement, event)
