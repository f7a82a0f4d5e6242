"""The customer's side of the program server: their enrollments' events, their limits, and
opting out of an event before it starts. Every read and write is walled to the customer's own
enrollments: another customer's enrollment or event is answered like an unknown one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.errors import InvalidInput
from programs.models import Device, Enrollment
from programs.vtn import preferences, repository
from programs.vtn.errors import EventAlreadyStarted
from programs.vtn.models import (
    DrEvent,
    EnrollmentPreferences,
    EventDelivery,
    EventStatus,
    OptedOutBy,
    OptResponse,
)
from programs.vtn.preferences import Limits
from programs.vtn.service import ven_name_of

EVENTS_SINCE = timedelta(days=7)
"""``viewer { enrollments { events } }`` lists the events that ended this long ago or later."""

STATE_SINCE = timedelta(days=1)
"""``viewer { enrollments { deviceState } }`` shows telemetry of this long ago or later."""


@dataclass(frozen=True)
class CustomerEvent:
    """An event as one of the customer's enrollments sees it."""

    enrollment_id: str
    event: DrEvent
    delivery: EventDelivery
    limits: Limits

    @property
    def soc_floor_percent(self) -> int:
        return preferences.charge_floor(self.event, self.limits)


async def own_enrollment(
    session: AsyncSession, *, customer_id: str, enrollment_id: str
) -> Enrollment:
    enrollment = await session.get(Enrollment, enrollment_id)
    if enrollment is None or enrollment.customer_id != customer_id:
        raise InvalidInput("no such enrollment", field="enrollmentId")
    return enrollment


async def enrollment_ids_of(session: AsyncSession, customer_id: str) -> list[str]:
    return list(await repository.enrollment_ids_of_customer(session, customer_id))


async def limits_of(session: AsyncSession, enrollment_ids: Sequence[str]) -> dict[str, Limits]:
    rows = await repository.preferences_of(session, enrollment_ids)
    return {e: Limits.of(rows.get(e)) for e in enrollment_ids}


async def events_of(
    session: AsyncSession, enrollment_ids: Sequence[str], *, ending_after: datetime | None = None
) -> dict[str, list[CustomerEvent]]:
    """Each enrollment's events that have not ended (by ``ending_after``, default now), soonest
    first, in two queries. The caller has the enrollments from the customer's own list."""
    rows = await repository.events_of_enrollments(
        session, enrollment_ids, ending_after=ending_after or utc_now()
    )
    limits = await limits_of(session, enrollment_ids)
    found: dict[str, list[CustomerEvent]] = {e: [] for e in enrollment_ids}
    for event, delivery, ven in rows:
        found[ven.enrollment_id].append(
            CustomerEvent(
                enrollment_id=ven.enrollment_id,
                event=event,
                delivery=delivery,
                limits=limits[ven.enrollment_id],
            )
        )
    return found


async def set_preferences(
    session: AsyncSession, *, customer_id: str, enrollment_id: str, limits: Limits
) -> EnrollmentPreferences:
    await own_enrollment(session, customer_id=customer_id, enrollment_id=enrollment_id)
    return await preferences.set_preferences(session, enrollment_id=enrollment_id, limits=limits)


async def opt_out(session: AsyncSession, *, customer_id: str, event_id: str) -> list[CustomerEvent]:
    """Withhold the event from every device of the customer it was for, before it starts
    (idempotent): a device that has it gets it again, cancelled for it; one that has not never
    gets it. Raises ``EventAlreadyStarted`` once it has started."""
    event = await session.get(DrEvent, event_id)
    deliveries = await repository.customer_deliveries_of_event(
        session, customer_id=customer_id, event_id=event_id
    )
    if event is None or not deliveries:
        raise InvalidInput("no such event", field="eventId")
    now = utc_now()
    if event.start <= now:
        raise EventAlreadyStarted(
            "this event has started: it can no longer be declined", start=event.start
        )
    limits = await limits_of(session, [ven.enrollment_id for _, ven in deliveries])
    for delivery, _ven in deliveries:
        if delivery.opted_out_by == OptedOutBy.CUSTOMER or event.status != EventStatus.ACTIVE:
            continue
        if delivery.opted_out_by is None:
            # Always: a poll racing this may hand the VEN the event before it commits.
            delivery.revision += 1
        delivery.opted_out_by = OptedOutBy.CUSTOMER
        delivery.response = OptResponse.OPT_OUT
        delivery.responded_at = now
        session.add(delivery)
    await session.flush()
    return [
        CustomerEvent(
            enrollment_id=ven.enrollment_id,
            event=event,
            delivery=delivery,
            limits=limits[ven.enrollment_id],
        )
        for delivery, ven in deliveries
    ]


async def enrollment_for_device(
    session: AsyncSession, enrollment_id: str
) -> tuple[dict[str, str], str, str] | None:
    """An ACTIVE OpenADR 2.0b enrollment's connection parameters and its device's make and
    model (for ``ovpp-wallet dev device``), else ``None``."""
    enrollment = await session.get(Enrollment, enrollment_id)
    if (
        enrollment is None
        or enrollment.status != "ACTIVE"
        or ven_name_of(enrollment) is None
        or not enrollment.connection_parameters
    ):
        return None
    device = await session.get(Device, enrollment.device_row_id)
    if device is None:
        return None
    return dict(enrollment.connection_parameters), device.make, device.model
