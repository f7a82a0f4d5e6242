"""An event's contribution records and its settlement row, written once: after the event has
ended (and the grace period has passed), every enrollment it was sent to gets its record by
the program's rule, its reward and its leaf; the Merkle root over all leaves goes in the
settlement. One transaction; the settlement's unique event id makes it exactly once."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import new_id, utc_now
from core.errors import InvalidInput
from identity.models import Tenant
from programs.admin import utility_wallet
from programs.deps import ProgramServices
from programs.models import Program
from programs.registry import registry_of
from programs.rewards import repository
from programs.rewards.contribution import (
    Dispatch,
    Rule,
    Sample,
    asked_kw,
    baseline_of,
    event_reward,
    history_since,
    history_until,
    kilowatts,
    measure,
)
from programs.rewards.distributor import event_id_of, event_ref_of
from programs.rewards.merkle import RewardLeaf, build_tree, leaf_hash
from programs.rewards.models import Response, RewardSettlement, SettlementStatus
from programs.vtn.events import end_of
from programs.vtn.models import DrEvent

UNKNOWN_MODEL_KW = 0.0


async def rule_for(session: AsyncSession, services: ProgramServices, program: Program) -> Rule:
    stored = await repository.rule_of(session, program.id)
    settings = services.settings
    return Rule(
        baseline_method=stored.baseline_method if stored else "METER_BEFORE_AFTER",
        baseline_window=timedelta(
            minutes=stored.baseline_window_minutes
            if stored
            else settings.rewards_baseline_window_minutes
        ),
        high_x=stored.high_x if stored else 4,
        high_y=stored.high_y if stored else 5,
        performance_floor_bps=stored.performance_floor_bps
        if stored
        else settings.rewards_performance_floor_bps,
        per_event_reward=program.per_event_reward,
    )


async def _model_limits(services: ProgramServices, model_ids: set[str]) -> dict[str, tuple]:
    """(max discharge kW, storage Wh) of each registered model, from the registry."""
    registry = registry_of(services.chain)
    limits = {}
    for model_id in model_ids:
        model = await registry.device_model(bytes.fromhex(model_id.removeprefix("0x")))
        limits[model_id] = (
            (model.max_discharge_w / 1000, model.energy_wh) if model else (UNKNOWN_MODEL_KW, 0)
        )
    return limits


async def compute_settlement(services: ProgramServices, event: DrEvent) -> RewardSettlement:
    """The event's settlement with its records, computed now unless it exists (then that)."""
    if utc_now() < end_of(event):
        raise InvalidInput("the event has not ended yet", field="eventId")
    async with services.db.session() as session:
        existing = await repository.settlement_of_event(session, event.id)
        if existing is not None:
            return existing
        program = await session.get_one(Program, event.program_row_id)
        tenant = await session.get_one(Tenant, event.tenant_id)
        rule = await rule_for(session, services, program)
        dispatched = await repository.dispatched(session, event.id)
    sponsor = (await utility_wallet(services, tenant)).address
    limits = await _model_limits(services, {d.device.model_id for d in dispatched})
    try:
        async with services.db.session() as session:
            settlement = await _write(
                session, services, event=event, program=program, rule=rule, sponsor=sponsor,
                dispatched=dispatched, limits=limits,
            )  # fmt: skip
    except IntegrityError:  # another process computed it at the same moment
        async with services.db.session() as session:
            settlement = await repository.settlement_of_event(session, event.id)
        assert settlement is not None
    return settlement


async def _write(
    session: AsyncSession,
    services: ProgramServices,
    *,
    event: DrEvent,
    program: Program,
    rule: Rule,
    sponsor: str,
    dispatched: list[repository.Dispatched],
    limits: dict[str, tuple],
) -> RewardSettlement:
    end = end_of(event)
    probe = Dispatch(event.start, end, 0, 1, 0, 0)
    readings = await repository.power_readings(
        session,
        [d.enrollment.id for d in dispatched],
        since=history_since(probe, rule),
        until=history_until(probe, rule),
    )
    bonus_paid = await repository.bonuses_paid(session, [d.enrollment.id for d in dispatched])
    event_ref = event_ref_of(event.id)
    chain_event_id = event_id_of(sponsor, event_ref)
    settlement_id = new_id()
    rows: list[dict[str, Any]] = []
    leaves: list[RewardLeaf] = []
    for index, item in enumerate(dispatched):
        row, leaf = _record(
            services, item, index=index, event=event, rule=rule, limits=limits, end=end,
            readings=readings.get(item.enrollment.id, []), chain_event_id=chain_event_id,
            bonus=0 if item.enrollment.id in bonus_paid else program.enrollment_bonus,
        )  # fmt: skip
        row["settlement_id"] = settlement_id
        rows.append(row)
        leaves.append(leaf)
    root = build_tree([leaf_hash(leaf) for leaf in leaves]).root if leaves else b"\x00" * 32
    settlement = RewardSettlement(
        id=settlement_id,
        event_id=event.id,
        tenant_id=event.tenant_id,
        program_row_id=program.id,
        status=SettlementStatus.COMPUTED if leaves else SettlementStatus.SETTLED,
        baseline_method=rule.baseline_method,
        sponsor_address=sponsor,
        event_ref="0x" + event_ref.hex(),
        chain_event_id="0x" + chain_event_id.hex(),
        root="0x" + root.hex(),
        leaf_count=len(leaves),
        recipients=sum(1 for leaf in leaves if leaf.amount > 0),
        total_reward=sum(leaf.amount for leaf in leaves),
        settled_at=None if leaves else utc_now(),
    )
    session.add(settlement)
    await session.flush()
    await repository.insert_records(session, rows)
    return settlement


def _record(
    services: ProgramServices,
    item: repository.Dispatched,
    *,
    index: int,
    event: DrEvent,
    rule: Rule,
    limits: dict[str, tuple],
    end: Any,
    readings: list[tuple],
    chain_event_id: bytes,
    bonus: int,
) -> tuple[dict[str, Any], RewardLeaf]:
    max_kw, energy_wh = limits.get(item.device.model_id, (UNKNOWN_MODEL_KW, 0))
    dispatch = Dispatch(
        start=event.start,
        end=end,
        asked_kw=asked_kw(target_kw=event.target_kw, level=event.level, max_discharge_kw=max_kw),
        interval_seconds=services.settings.program_server_report_seconds,
        max_discharge_kw=max_kw,
        energy_wh=energy_wh,
    )
    samples = [Sample(at, kilowatts(v, unit=u, scale=s)) for at, v, u, s in readings]
    response = item.delivery.response or Response.NONE
    contribution = measure(samples, dispatch, baseline_of(samples, dispatch, rule), response)
    reward = event_reward(contribution, rule, response=response)
    took_part = response != Response.OPT_OUT and contribution.received_readings > 0
    bonus = bonus if took_part else 0
    leaf = RewardLeaf(
        index=index,
        device_id=bytes.fromhex(item.device.device_id.removeprefix("0x")),
        recipient=item.recipient,
        amount=reward + bonus,
        contribution_wh=contribution.delivered_wh,
        event_id=chain_event_id,
        performance_bps=contribution.performance_bps,
    )
    row = {
        **asdict(contribution),
        "id": new_id(),
        "event_id": event.id,
        "enrollment_id": item.enrollment.id,
        "customer_id": item.enrollment.customer_id,
        "device_row_id": item.device.id,
        "device_id": item.device.device_id,
        "recipient": item.recipient,
        "response": response,
        "baseline_method": rule.baseline_method,
        "event_reward": reward,
        "enrollment_bonus": bonus,
        "bonus_enrollment_id": item.enrollment.id if bonus else None,
        "amount": leaf.amount,
        "leaf_index": index,
        "claim_status": "PENDING",
        "created_at": utc_now(),
    }
    return row, leaf
