"""Demand-response events: a utility administrator creates and cancels them; each goes to
every VEN of the program's ACTIVE enrollments, which the program server hands them to when
they poll, and records each VEN's answer (opt in, opt out) with its time.

An event's ``modification_number`` grows with each change: a VEN whose delivery is behind it
gets the event again at its next poll (a cancellation reaches it that way).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.errors import InvalidInput, NotFound
from core.idempotency import request_fingerprint, require_idempotency_key
from programs.errors import OtherUtility
from programs.models import Program
from programs.vtn import preferences, repository
from programs.vtn.models import DrEvent, EventDelivery, EventStatus, OptResponse, Ven
from programs.vtn.preferences import Limits

SIGNAL_TYPES = {"SIMPLE": ("SIMPLE", "level"), "LOAD_DISPATCH": ("LOAD_DISPATCH", "setpoint")}
"""Our signal type → OpenADR's (signalName, signalType): SIMPLE is a level 0–3; LOAD_DISPATCH
a setpoint in kW (``targetKw``)."""

CHARGE_FLOOR_SIGNAL = "CHARGE_STATE"
"""Each event a VEN gets carries a second signal, CHARGE_STATE ``setpoint``: the state of charge
(percent) to keep during it, from its customer's limits (``programs.vtn.preferences``)."""

MAX_DURATION_MINUTES = repository.MAX_EVENT_MINUTES
MAX_START_AGE = timedelta(minutes=5)
MAX_START_AHEAD = timedelta(days=366)
MAX_TARGET_KW = 1_000_000.0  # a gigawatt: more than any program dispatches
OPT_TYPES = {"optIn": OptResponse.OPT_IN, "optOut": OptResponse.OPT_OUT}


@dataclass(frozen=True)
class EventSpec:
    program_row_id: str
    start: datetime
    duration_minutes: int
    signal_type: str = "SIMPLE"
    level: float = 1.0
    target_kw: float | None = None


@dataclass(frozen=True)
class VenEvent:
    """An event as one VEN gets it: withheld from it (sent as cancelled, if it had it), at
    its own modification number, with the state-of-charge floor of its customer's limits."""

    event: DrEvent
    modification_number: int
    cancelled: bool
    soc_floor_percent: int


@dataclass(frozen=True)
class EventView:
    event: DrEvent
    deliveries: list[tuple[EventDelivery, Ven]]


def end_of(event: DrEvent) -> datetime:
    return event.start + timedelta(minutes=event.duration_minutes)


async def program_of_utility(
    session: AsyncSession, *, tenant_id: str, program_row_id: str
) -> Program:
    """The administrator's own program; another utility's is refused like an unknown one."""
    program = await session.get(Program, program_row_id)
    if program is None:
        raise NotFound("no such program")
    if program.tenant_id != tenant_id:
        raise OtherUtility("this program belongs to another utility", field="programId")
    return program


def _check(spec: EventSpec, now: datetime) -> None:
    if spec.signal_type not in SIGNAL_TYPES:
        raise InvalidInput("signal.type must be SIMPLE or LOAD_DISPATCH", field="signal.type")
    if not 1 <= spec.duration_minutes <= MAX_DURATION_MINUTES:
        raise InvalidInput(
            f"durationMinutes must be 1 to {MAX_DURATION_MINUTES}", field="durationMinutes"
        )
    if spec.start.tzinfo is None:
        raise InvalidInput("start needs a time zone", field="start")
    if spec.start < now - MAX_START_AGE:
        raise InvalidInput("start is in the past", field="start")
    if spec.start > now + MAX_START_AHEAD:
        raise InvalidInput("start is more than a year ahead", field="start")
    if not math.isfinite(spec.level):
        raise InvalidInput("signal.level is a number", field="signal.level")
    if spec.signal_type == "SIMPLE" and not (
        0 <= spec.level <= 3 and spec.level == int(spec.level)
    ):
        raise InvalidInput("a SIMPLE signal's level is 0, 1, 2 or 3", field="signal.level")
    if spec.target_kw is not None and not 0 <= spec.target_kw <= MAX_TARGET_KW:
        raise InvalidInput(f"targetKw is 0 to {MAX_TARGET_KW:,.0f} kW", field="signal.targetKw")
    if spec.signal_type == "LOAD_DISPATCH" and spec.target_kw is None:
        raise InvalidInput("a LOAD_DISPATCH signal needs targetKw", field="signal.targetKw")


async def create_event(
    session: AsyncSession, *, tenant_id: str, spec: EventSpec, idempotency_key: str
) -> DrEvent:
    """Record the event and a delivery for each provisioned VEN of the program; the program
    server sends it at their next poll. Idempotent per (utility, key)."""
    require_idempotency_key(idempotency_key)
    await program_of_utility(session, tenant_id=tenant_id, program_row_id=spec.program_row_id)
    fingerprint = request_fingerprint(
        spec.program_row_id,
        spec.start.isoformat(),
        str(spec.duration_minutes),
        spec.signal_type,
        repr(spec.level),
        repr(spec.target_kw),
    )
    existing = await repository.event_by_key(session, tenant_id, idempotency_key)
    if existing is not None:
        if existing.request_fingerprint != fingerprint:
            raise InvalidInput(
                "this idempotency key was already used for another event", field="idempotencyKey"
            )
        return existing
    _check(spec, utc_now())
    event = DrEvent(
        tenant_id=tenant_id,
        program_row_id=spec.program_row_id,
        start=spec.start,
        duration_minutes=spec.duration_minutes,
        signal_type=spec.signal_type,
        level=spec.level,
        target_kw=spec.target_kw,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
    )
    session.add(event)
    await session.flush()
    vens = await repository.provisioned_vens(session, spec.program_row_id)
    limits = await repository.preferences_of(session, [ven.enrollment_id for ven in vens])
    now = utc_now()
    for ven in vens:
        delivery = EventDelivery(event_id=event.id, ven_row_id=ven.id)
        preferences.settle(delivery, event, Limits.of(limits.get(ven.enrollment_id)), now=now)
        session.add(delivery)
    await session.flush()
    return event


async def cancel_event(session: AsyncSession, *, tenant_id: str, event_id: str) -> DrEvent:
    """Cancel the utility's event (again: nothing changes); its VENs see it at their next poll."""
    event = await session.get(DrEvent, event_id)
    if event is None or event.tenant_id != tenant_id:
        raise InvalidInput("no such event", field="eventId")
    if await repository.cancel_event(session, event.id, now=utc_now()):
        await session.refresh(event)
    return event


async def events_of(
    session: AsyncSession, *, tenant_id: str, program_row_id: str, first: int = 50
) -> list[EventView]:
    """The program's events, newest start first, each with its VENs' deliveries."""
    if not 1 <= first <= 200:
        raise InvalidInput("first must be between 1 and 200", field="first")
    await program_of_utility(session, tenant_id=tenant_id, program_row_id=program_row_id)
    events = await repository.events_of_program(session, program_row_id, first=first)
    deliveries = await repository.deliveries_of_events(session, [e.id for e in events])
    return [
        EventView(event=e, deliveries=[(d, v) for d, v in deliveries if d.event_id == e.id])
        for e in events
    ]


async def view_of(session: AsyncSession, event: DrEvent) -> EventView:
    return EventView(
        event=event, deliveries=list(await repository.deliveries_of_events(session, [event.id]))
    )


async def events_for_ven(session: AsyncSession, ven: Ven, *, only_changed: bool) -> list[VenEvent]:
    """The VEN's events that have not ended (``only_changed``: those it has not received in
    their current modification, for oadrPoll), each marked delivered. An event withheld from it
    (opted out, outside its customer's limits) is never sent, or sent once more as cancelled if
    it had it."""
    now = utc_now()
    rows = await repository.deliveries_of_ven(session, ven.id, ending_after=now)
    limits = Limits.of(
        (await repository.preferences_of(session, [ven.enrollment_id])).get(ven.enrollment_id)
    )
    found = []
    for delivery, event in rows:
        preferences.settle(delivery, event, limits, now=now)
        withheld = delivery.opted_out_by is not None
        modification = event.modification_number + delivery.revision
        if withheld and delivery.delivered_modification < 0:
            continue
        if only_changed and delivery.delivered_modification >= modification:
            continue
        delivery.delivered_modification = modification
        delivery.delivered_at = now
        session.add(delivery)
        found.append(
            VenEvent(
                event=event,
                modification_number=modification,
                cancelled=withheld or event.status == EventStatus.CANCELLED,
                soc_floor_percent=preferences.charge_floor(event, limits),
            )
        )
    await session.flush()
    return found


async def record_response(session: AsyncSession, ven: Ven, *, event_id: str, opt_type: str) -> None:
    """The VEN's answer (oadrCreatedEvent), with its time. Its reply to a cancellation keeps
    the answer it gave the event, and an event withheld from it stays opted out."""
    delivery = await repository.delivery_of(session, event_id, ven.id)
    response = OPT_TYPES.get(opt_type)
    if delivery is None or response is None or delivery.opted_out_by is not None:
        return
    event = await session.get(DrEvent, event_id)
    if event is None or (event.status == EventStatus.CANCELLED and delivery.response is not None):
        return
    delivery.response = response
    delivery.responded_at = utc_now()
    session.add(delivery)
    await session.flush()
