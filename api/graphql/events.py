"""Demand-response events of the program server (utility admin, scope ``utility:admin``):
``utilityAdmin { events(programId) }``, ``createEvent`` and ``cancelEvent``, always on the
caller's own utility's programs."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql.failures import InvalidInput, typed_failures
from core.db import utc_now
from identity.principal import Scope
from programs.vtn import capacity
from programs.vtn import events as dr_events
from programs.vtn.models import DrEvent, EventDelivery, EventStatus, Ven

Info = strawberry.Info[RequestContext, None]


@strawberry.enum(description="What an event asks of the devices.")
class DemandResponseSignalType(Enum):
    SIMPLE = strawberry.enum_value("SIMPLE", description="OpenADR's SIMPLE level: 0 (normal) to 3.")
    LOAD_DISPATCH = strawberry.enum_value(
        "LOAD_DISPATCH", description="A setpoint in kW (`targetKw`)."
    )


@strawberry.enum(description="SCHEDULED before its start, ACTIVE during it, then COMPLETED.")
class DemandResponseEventStatus(Enum):
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


@strawberry.enum(description="A device's answer to an event (oadrCreatedEvent).")
class EventOptResponse(Enum):
    OPT_IN = "OPT_IN"
    OPT_OUT = "OPT_OUT"


@strawberry.input
class DemandResponseSignalInput:
    type: DemandResponseSignalType | None = strawberry.field(
        default=None, description="Omitted: SIMPLE."
    )
    level: float = strawberry.field(default=1.0, description="The SIMPLE level, 0 to 3.")
    target_kw: float | None = strawberry.field(
        default=None,
        description="kW asked of each device: LOAD_DISPATCH's setpoint (required there); with "
        "SIMPLE, what the utility expects.",
    )


@strawberry.input(description="An event for every device of the program's ACTIVE enrollments.")
class CreateEventInput:
    program_id: strawberry.ID
    start: datetime = strawberry.field(description="With a time zone; not in the past.")
    duration_minutes: int = strawberry.field(description="1 to 1440.")
    signal: DemandResponseSignalInput
    idempotency_key: str = strawberry.field(
        description="Client-chosen: the same key returns the same event."
    )


@strawberry.type
class DemandResponseSignal:
    type: DemandResponseSignalType
    level: float
    target_kw: float | None


@strawberry.type(description="One device's (VEN's) delivery of an event and its answer.")
class EventVenResponse:
    enrollment_id: strawberry.ID
    ven_name: str
    response: EventOptResponse | None = strawberry.field(description="null: no answer yet.")
    responded_at: datetime | None
    delivered_at: datetime | None = strawberry.field(
        description="When the device last received it (its newest modification included)."
    )

    @classmethod
    def from_rows(cls, delivery: EventDelivery, ven: Ven) -> EventVenResponse:
        return cls(
            enrollment_id=strawberry.ID(ven.enrollment_id),
            ven_name=ven.ven_name,
            response=EventOptResponse(delivery.response) if delivery.response else None,
            responded_at=delivery.responded_at,
            delivered_at=delivery.delivered_at,
        )


@strawberry.type(description="A demand-response event of one of the utility's programs.")
class DemandResponseEvent:
    id: strawberry.ID
    program_id: strawberry.ID
    start: datetime
    end: datetime
    duration_minutes: int
    status: DemandResponseEventStatus
    signal: DemandResponseSignal
    created_at: datetime
    cancelled_at: datetime | None
    responses: list[EventVenResponse] = strawberry.field(
        description="One per device the event went to, by VEN name."
    )
    row: strawberry.Private[DrEvent]
    deliveries: strawberry.Private[list[tuple[EventDelivery, Ven]]]

    @strawberry.field(
        description="targetKw times the devices it went to that did not decline it; null "
        "without targetKw."
    )
    async def requested_kw(self, info: Info) -> float | None:
        return (await self._performance(info)).requested_kw

    @strawberry.field(
        description="What those devices showed: the sum of their mean export (-power_real, "
        "kW) during the event so far; null before it starts."
    )
    async def delivered_kw(self, info: Info) -> float | None:
        return (await self._performance(info)).delivered_kw

    async def _performance(self, info: Info) -> capacity.EventPerformance:
        async with info.context.read_session() as session:
            return await capacity.event_performance(session, self.row, self.deliveries)

    @classmethod
    def from_rows(
        cls, event: DrEvent, deliveries: list[tuple[EventDelivery, Ven]]
    ) -> DemandResponseEvent:
        end = dr_events.end_of(event)
        now = utc_now()
        if event.status == EventStatus.CANCELLED:
            status = DemandResponseEventStatus.CANCELLED
        elif now < event.start:
            status = DemandResponseEventStatus.SCHEDULED
        else:
            status = (
                DemandResponseEventStatus.ACTIVE
                if now < end
                else DemandResponseEventStatus.COMPLETED
            )
        return cls(
            id=strawberry.ID(event.id),
            program_id=strawberry.ID(event.program_row_id),
            start=event.start,
            end=end,
            duration_minutes=event.duration_minutes,
            status=status,
            signal=DemandResponseSignal(
                type=DemandResponseSignalType(event.signal_type),
                level=event.level,
                target_kw=event.target_kw,
            ),
            created_at=event.created_at,
            cancelled_at=event.cancelled_at,
            responses=[EventVenResponse.from_rows(d, v) for d, v in deliveries],
            row=event,
            deliveries=deliveries,
        )


CreateEventResult = Annotated[
    DemandResponseEvent | InvalidInput, strawberry.union("CreateEventResult")
]
CancelEventResult = Annotated[
    DemandResponseEvent | InvalidInput, strawberry.union("CancelEventResult")
]


async def _admin_tenant(info: Info) -> str:
    principal = await info.context.principal()
    principal.require(Scope.UTILITY_ADMIN)
    return principal.tenant_id


async def events_of_program(
    info: Info, tenant_id: str, program_id: strawberry.ID, first: int
) -> list[DemandResponseEvent]:
    async with info.context.read_session() as session:
        views = await dr_events.events_of(
            session, tenant_id=tenant_id, program_row_id=str(program_id), first=first
        )
    return [DemandResponseEvent.from_rows(view.event, view.deliveries) for view in views]


async def _view(info: Info, event: DrEvent) -> DemandResponseEvent:
    view = await dr_events.view_of(await info.context.session(), event)
    return DemandResponseEvent.from_rows(view.event, view.deliveries)


@typed_failures(CreateEventResult)
async def create_event(info: Info, input: CreateEventInput) -> CreateEventResult:  # type: ignore[valid-type]
    tenant_id = await _admin_tenant(info)
    signal = input.signal
    session = await info.context.session()
    event = await dr_events.create_event(
        session,
        tenant_id=tenant_id,
        spec=dr_events.EventSpec(
            program_row_id=str(input.program_id),
            start=input.start,
            duration_minutes=input.duration_minutes,
            signal_type=(signal.type or DemandResponseSignalType.SIMPLE).value,
            level=signal.level,
            target_kw=signal.target_kw,
        ),
        idempotency_key=input.idempotency_key,
    )
    return await _view(info, event)


@typed_failures(CancelEventResult)
async def cancel_event(info: Info, event_id: strawberry.ID) -> CancelEventResult:  # type: ignore[valid-type]
    tenant_id = await _admin_tenant(info)
    session = await info.context.session()
    event = await dr_events.cancel_event(session, tenant_id=tenant_id, event_id=str(event_id))
    return await _view(info, event)


@strawberry.type(
    description="What a program's devices can give now, from their newest telemetry "
    "(docs/program-server.md, Aggregation)."
)
class ProgramCapacity:
    devices: int = strawberry.field(description="Devices provisioned (ACTIVE enrollments).")
    online_devices: int = strawberry.field(
        description="Those that reported within OVPP_PROGRAM_SERVER_ONLINE_REPORTS intervals."
    )
    available_kw: float = strawberry.field(
        description="Online batteries above their reserve: the swing to full discharge, kW."
    )
    available_kwh: float = strawberry.field(
        description="Online batteries: the energy above their reserve, kWh."
    )


async def program_capacity(
    info: Info, tenant_id: str, program_id: strawberry.ID
) -> ProgramCapacity:
    context = info.context
    settings = context.services.settings
    async with context.read_session() as session:
        await dr_events.program_of_utility(
            session, tenant_id=tenant_id, program_row_id=str(program_id)
        )
        found = await capacity.program_capacity(
            session,
            services=context.services,
            program_row_id=str(program_id),
            since=capacity.online_since(
                settings.program_server_report_seconds, settings.program_server_online_reports
            ),
        )
    return ProgramCapacity(
        devices=found.devices,
        online_devices=found.online_devices,
        available_kw=found.available_kw,
        available_kwh=found.available_kwh,
    )
