"""The customer's side of demand response (scope ``wallet:read``, writes ``wallet:sign``): an
enrollment's ``preferences`` and ``events``, ``setEnrollmentPreferences`` and ``optOut``, and the
``programEvents`` subscription; always the customer's own enrollments only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql.events import DemandResponseEventStatus, DemandResponseSignalType, EventOptResponse
from api.graphql.failures import EventAlreadyStarted, InvalidInput, typed_failures
from core.db import utc_now
from identity.principal import Scope
from programs.vtn import customer, preferences
from programs.vtn.capacity import online_since
from programs.vtn.customer import CustomerEvent
from programs.vtn.events import end_of
from programs.vtn.models import EventStatus
from programs.vtn.preferences import Limits

Info = strawberry.Info[RequestContext, None]

SUBSCRIPTION_POLL_SECONDS = 1.0


@strawberry.enum(description="Who kept an event from the device.")
class EventOptOutBy(Enum):
    CUSTOMER = strawberry.enum_value("CUSTOMER", description="`optOut` before it started.")
    PREFERENCES = strawberry.enum_value(
        "PREFERENCES", description="It would still run at the customer's `readyBy`."
    )


@strawberry.type(
    description="The customer's limits for the device (SMARTFlex): the program schedules within "
    "them. Defaults: reserve 20 %, no ready-by."
)
class EnrollmentPreferences:
    reserve_soc_percent: int = strawberry.field(
        description="The state of charge the battery keeps during any event."
    )
    ready_by: str | None = strawberry.field(
        description="A time of day, HH:MM UTC: the battery is at `targetSocPercent` then; an "
        "event still running at it is not sent to the device."
    )
    target_soc_percent: int | None

    @classmethod
    def from_limits(cls, limits: Limits) -> EnrollmentPreferences:
        return cls(
            reserve_soc_percent=limits.reserve_soc_percent,
            ready_by=limits.ready_by.strftime("%H:%M") if limits.ready_by else None,
            target_soc_percent=limits.target_soc_percent,
        )


def event_status(status: str, start: datetime, end: datetime) -> DemandResponseEventStatus:
    if status == EventStatus.CANCELLED:
        return DemandResponseEventStatus.CANCELLED
    now = utc_now()
    if now < start:
        return DemandResponseEventStatus.SCHEDULED
    return DemandResponseEventStatus.ACTIVE if now < end else DemandResponseEventStatus.COMPLETED


@strawberry.type(description="A demand-response event as one of the customer's devices gets it.")
class EnrollmentEvent:
    id: strawberry.ID
    enrollment_id: strawberry.ID
    start: datetime
    end: datetime
    status: DemandResponseEventStatus
    signal: DemandResponseSignalType = strawberry.field(description="What it asks of the device.")
    level: float = strawberry.field(description="The SIMPLE level, 0 to 3.")
    target_kw: float | None = strawberry.field(description="The kW asked of the device.")
    soc_floor_percent: int = strawberry.field(
        description="The state of charge the device keeps during it (from the preferences)."
    )
    response: EventOptResponse | None = strawberry.field(
        description="OPT_OUT once opted out (by the customer or the preferences); otherwise the "
        "device's answer; null: none yet."
    )
    opted_out_by: EventOptOutBy | None

    @classmethod
    def from_view(cls, view: CustomerEvent) -> EnrollmentEvent:
        event, delivery = view.event, view.delivery
        end = end_of(event)
        return cls(
            id=strawberry.ID(event.id),
            enrollment_id=strawberry.ID(view.enrollment_id),
            start=event.start,
            end=end,
            status=event_status(event.status, event.start, end),
            signal=DemandResponseSignalType(event.signal_type),
            level=event.level,
            target_kw=event.target_kw,
            soc_floor_percent=view.soc_floor_percent,
            response=EventOptResponse(delivery.response) if delivery.response else None,
            opted_out_by=EventOptOutBy(delivery.opted_out_by) if delivery.opted_out_by else None,
        )


@strawberry.type(description="The device's newest telemetry, as its VEN reported it.")
class DeviceState:
    power_kw: float | None = strawberry.field(
        description="Real power, kW: positive while it draws from the grid, negative exporting."
    )
    state_of_charge_percent: float | None
    reported_at: datetime | None
    online: bool = strawberry.field(
        description="Reported within OVPP_PROGRAM_SERVER_ONLINE_REPORTS report intervals."
    )


async def device_state(info: Info, enrollment_id: str) -> DeviceState | None:
    state = await info.context.loaders.device_states.load(enrollment_id)
    if state is None:
        return None
    settings = info.context.services.settings
    since = online_since(
        settings.program_server_report_seconds, settings.program_server_online_reports
    )
    return DeviceState(
        power_kw=None if state.power_kw is None else round(state.power_kw, 3),
        state_of_charge_percent=state.state_of_charge_percent,
        reported_at=state.reported_at,
        online=state.reported_at is not None and state.reported_at >= since,
    )


@strawberry.input
class SetEnrollmentPreferencesInput:
    enrollment_id: strawberry.ID
    reserve_soc_percent: int = strawberry.field(description="0 to 100.")
    ready_by: str | None = strawberry.field(
        default=None, description="HH:MM, UTC; with `targetSocPercent`."
    )
    target_soc_percent: int | None = strawberry.field(
        default=None, description="reserveSocPercent to 100; with `readyBy`."
    )


@strawberry.input
class OptOutInput:
    event_id: strawberry.ID


@strawberry.type(description="The event, declined for each of the customer's devices it was for.")
class OptedOut:
    event_id: strawberry.ID
    events: list[EnrollmentEvent]


SetEnrollmentPreferencesResult = Annotated[
    EnrollmentPreferences | InvalidInput, strawberry.union("SetEnrollmentPreferencesResult")
]
OptOutResult = Annotated[
    OptedOut | EventAlreadyStarted | InvalidInput, strawberry.union("OptOutResult")
]


@typed_failures(SetEnrollmentPreferencesResult)
async def set_enrollment_preferences(
    info: Info, input: SetEnrollmentPreferencesInput
) -> SetEnrollmentPreferencesResult:  # type: ignore[valid-type]
    account = await info.context.account(Scope.WALLET_SIGN)
    limits = Limits(
        reserve_soc_percent=input.reserve_soc_percent,
        ready_by=preferences.parse_ready_by(input.ready_by),
        target_soc_percent=input.target_soc_percent,
    )
    row = await customer.set_preferences(
        await info.context.session(),
        customer_id=account.customer.id,
        enrollment_id=str(input.enrollment_id),
        limits=limits,
    )
    return EnrollmentPreferences.from_limits(Limits.of(row))


@typed_failures(OptOutResult)
async def opt_out(info: Info, input: OptOutInput) -> OptOutResult:  # type: ignore[valid-type]
    account = await info.context.account(Scope.WALLET_SIGN)
    views = await customer.opt_out(
        await info.context.session(), customer_id=account.customer.id, event_id=str(input.event_id)
    )
    return OptedOut(event_id=input.event_id, events=[EnrollmentEvent.from_view(v) for v in views])


@strawberry.enum(description="What happened to an event of one of the customer's devices.")
class ProgramEventChange(Enum):
    ANNOUNCED = "ANNOUNCED"
    STARTED = "STARTED"
    ENDED = "ENDED"
    CANCELLED = "CANCELLED"
    OPTED_OUT = "OPTED_OUT"


@strawberry.type
class ProgramEventUpdate:
    change: ProgramEventChange
    event: EnrollmentEvent


def _change(event: EnrollmentEvent) -> ProgramEventChange:
    if event.opted_out_by is not None:
        return ProgramEventChange.OPTED_OUT
    return {
        DemandResponseEventStatus.SCHEDULED: ProgramEventChange.ANNOUNCED,
        DemandResponseEventStatus.ACTIVE: ProgramEventChange.STARTED,
        DemandResponseEventStatus.COMPLETED: ProgramEventChange.ENDED,
        DemandResponseEventStatus.CANCELLED: ProgramEventChange.CANCELLED,
    }[event.status]


async def program_events(info: Info) -> AsyncGenerator[ProgramEventUpdate, None]:
    """Each of the customer's devices' events not ended when it starts (as announced or
    started), then every change: announced, started, ended, cancelled, opted out. Read every
    second, as ``transactionUpdates`` does; runs until the client stops it."""
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    seen: dict[tuple[str, str], ProgramEventChange] = {}
    ending_after = utc_now()
    while True:
        async with context.services.db.session() as session:
            views = await customer.events_of(
                session,
                await customer.enrollment_ids_of(session, account.customer.id),
                ending_after=ending_after,
            )
        for view in sorted((v for vs in views.values() for v in vs), key=lambda v: v.event.start):
            event = EnrollmentEvent.from_view(view)
            key = (str(event.id), str(event.enrollment_id))
            change = _change(event)
            if seen.get(key) != change and not (key not in seen and change in _FINAL):
                seen[key] = change
                yield ProgramEventUpdate(change=change, event=event)
        ending_after = utc_now() - _LOOKBACK
        await asyncio.sleep(SUBSCRIPTION_POLL_SECONDS)


_FINAL = {ProgramEventChange.ENDED, ProgramEventChange.CANCELLED, ProgramEventChange.OPTED_OUT}
_LOOKBACK = timedelta(seconds=SUBSCRIPTION_POLL_SECONDS * 5)
"""Each poll looks this far back, so an event that ended since the last one is seen ending."""
