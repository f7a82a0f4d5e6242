"""SQL of the program server."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db import insert_many_if_absent, new_id
from programs.models import Device, Enrollment
from programs.vtn.models import (
    DeviceReading,
    DrEvent,
    EnrollmentPreferences,
    EventDelivery,
    EventStatus,
    ReportStream,
    Ven,
    VenStatus,
)

MAX_EVENT_MINUTES = 24 * 60
"""The longest event (``programs.vtn.events``): bounds the scan for events not ended."""


async def ven_by_name(session: AsyncSession, ven_name: str) -> Ven | None:
    return (await session.execute(select(Ven).where(Ven.ven_name == ven_name))).scalar_one_or_none()


async def ven_by_ven_id(session: AsyncSession, ven_id: str) -> Ven | None:
    return (await session.execute(select(Ven).where(Ven.ven_id == ven_id))).scalar_one_or_none()


async def ven_of_enrollment(session: AsyncSession, enrollment_id: str) -> Ven | None:
    statement = select(Ven).where(Ven.enrollment_id == enrollment_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def provisioned_vens(session: AsyncSession, program_row_id: str) -> Sequence[Ven]:
    statement = select(Ven).where(
        Ven.program_row_id == program_row_id, Ven.status == VenStatus.PROVISIONED
    )
    return (await session.execute(statement)).scalars().all()


async def event_by_key(
    session: AsyncSession, tenant_id: str, idempotency_key: str
) -> DrEvent | None:
    statement = select(DrEvent).where(
        DrEvent.tenant_id == tenant_id, DrEvent.idempotency_key == idempotency_key
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def events_of_program(
    session: AsyncSession, program_row_id: str, *, first: int
) -> Sequence[DrEvent]:
    statement = (
        select(DrEvent)
        .where(DrEvent.program_row_id == program_row_id)
        .order_by(DrEvent.start.desc(), DrEvent.id)
        .limit(first)
    )
    return (await session.execute(statement)).scalars().all()


async def events_not_ended(
    session: AsyncSession, program_row_id: str, *, now: datetime
) -> list[DrEvent]:
    """The program's ACTIVE events that have not ended (their end computed in Python, as in
    ``deliveries_of_ven``)."""
    statement = select(DrEvent).where(
        DrEvent.program_row_id == program_row_id,
        DrEvent.status == EventStatus.ACTIVE,
        DrEvent.start > now - timedelta(minutes=MAX_EVENT_MINUTES),
    )
    events = (await session.execute(statement)).scalars()
    return [e for e in events if e.start + timedelta(minutes=e.duration_minutes) > now]


async def deliveries_of_events(
    session: AsyncSession, event_ids: Sequence[str]
) -> Sequence[tuple[EventDelivery, Ven]]:
    """Each delivery of these events with its VEN, in one query."""
    if not event_ids:
        return []
    statement = (
        select(EventDelivery, Ven)
        .join(Ven, Ven.id == EventDelivery.ven_row_id)
        .where(EventDelivery.event_id.in_(event_ids))
        .order_by(Ven.ven_name)
    )
    return [(delivery, ven) for delivery, ven in (await session.execute(statement)).all()]


async def cancel_event(session: AsyncSession, event_id: str, *, now: datetime) -> bool:
    """ACTIVE → CANCELLED, with a new modification number; settled in SQL (a second cancel,
    or one racing this, changes nothing)."""
    result = await session.execute(
        update(DrEvent)
        .where(DrEvent.id == event_id, DrEvent.status == EventStatus.ACTIVE)
        .values(
            status=EventStatus.CANCELLED,
            cancelled_at=now,
            modification_number=DrEvent.modification_number + 1,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def deliveries_of_ven(
    session: AsyncSession, ven_row_id: str, *, ending_after: datetime
) -> Sequence[tuple[EventDelivery, DrEvent]]:
    """The VEN's events that have not ended (an event's end is computed in Python: the
    portable SQL for start + minutes differs between SQLite and PostgreSQL; a VEN has few)."""
    statement = (
        select(EventDelivery, DrEvent)
        .join(DrEvent, DrEvent.id == EventDelivery.event_id)
        .where(EventDelivery.ven_row_id == ven_row_id)
        .order_by(DrEvent.start)
    )
    rows = (await session.execute(statement)).all()
    return [
        (delivery, event)
        for delivery, event in rows
        if event.start.timestamp() + event.duration_minutes * 60 > ending_after.timestamp()
    ]


async def delivery_of(
    session: AsyncSession, event_id: str, ven_row_id: str
) -> EventDelivery | None:
    statement = select(EventDelivery).where(
        EventDelivery.event_id == event_id, EventDelivery.ven_row_id == ven_row_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def replace_report_streams(
    session: AsyncSession, ven_row_id: str, streams: Sequence[ReportStream]
) -> None:
    """A VEN that registers its reports again replaces its streams: the old ones stop being
    stored (otherwise a re-registration would store every sample twice)."""
    await session.execute(delete(ReportStream).where(ReportStream.ven_row_id == ven_row_id))
    session.add_all(streams)
    await session.flush()


async def add_deliveries(session: AsyncSession, ven_row_id: str, event_ids: Sequence[str]) -> None:
    """Deliveries of these events to the VEN, unless it has them already."""
    await insert_many_if_absent(
        session,
        EventDelivery.__table__,
        [
            {"id": new_id(), "event_id": e, "ven_row_id": ven_row_id, "delivered_modification": -1}
            for e in event_ids
        ],
    )


async def report_streams(
    session: AsyncSession, ven_row_id: str, report_request_ids: Sequence[str]
) -> dict[tuple[str, str], ReportStream]:
    statement = select(ReportStream).where(
        ReportStream.ven_row_id == ven_row_id,
        ReportStream.report_request_id.in_(report_request_ids),
    )
    streams = (await session.execute(statement)).scalars()
    return {(s.report_request_id, s.r_id): s for s in streams}


async def insert_readings(
    executor: AsyncSession | AsyncConnection, rows: Sequence[dict[str, Any]]
) -> None:
    """One statement for the batch; a sample sent twice (a VEN's retry) is kept once."""
    await insert_many_if_absent(executor, DeviceReading.__table__, rows)


_VENS = Ven.__table__  # type: ignore[attr-defined]
_STREAMS = ReportStream.__table__  # type: ignore[attr-defined]
_VEN_IDENTITY = select(
    _VENS.c.id,
    _VENS.c.ven_id,
    _VENS.c.ven_name,
    _VENS.c.enrollment_id,
    _VENS.c.status,
    _VENS.c.registration_id,
    _VENS.c.cert_fingerprint,
).where(_VENS.c.ven_id == bindparam("ven_id"))
_STREAMS_OF_VEN = select(
    _STREAMS.c.report_request_id,
    _STREAMS.c.r_id,
    _STREAMS.c.resource_id,
    _STREAMS.c.measurement,
    _STREAMS.c.unit,
    _STREAMS.c.scale,
    _STREAMS.c.reading_type,
).where(_STREAMS.c.ven_row_id == bindparam("ven_row_id"))


async def ven_identity(executor: AsyncSession | AsyncConnection, ven_id: str) -> Any | None:
    """The row of the VEN behind a ``ven_id`` (id, ven_id, ven_name, enrollment_id, status,
    registration_id, cert_fingerprint) in one Core statement, built once: the lookup of every
    message the program server gets."""
    return (await executor.execute(_VEN_IDENTITY, {"ven_id": ven_id})).one_or_none()


async def streams_of_ven(executor: AsyncSession | AsyncConnection, ven_row_id: str) -> list[Any]:
    """Every stream the VEN was asked for (report_request_id, r_id, resource_id, measurement,
    unit, scale, reading_type)."""
    return list((await executor.execute(_STREAMS_OF_VEN, {"ven_row_id": ven_row_id})).all())


async def readings_of_enrollment(
    session: AsyncSession, enrollment_id: str, *, measurement: str | None = None
) -> Sequence[DeviceReading]:
    statement = select(DeviceReading).where(DeviceReading.enrollment_id == enrollment_id)
    if measurement is not None:
        statement = statement.where(DeviceReading.measurement == measurement)
    return (await session.execute(statement.order_by(DeviceReading.timestamp))).scalars().all()


async def delete_readings_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(DeviceReading).where(DeviceReading.timestamp < cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def enrollment(session: AsyncSession, enrollment_id: str) -> Enrollment | None:
    return await session.get(Enrollment, enrollment_id)


async def preferences_of(
    session: AsyncSession, enrollment_ids: Sequence[str]
) -> dict[str, EnrollmentPreferences]:
    if not enrollment_ids:
        return {}
    statement = select(EnrollmentPreferences).where(
        EnrollmentPreferences.enrollment_id.in_(enrollment_ids)
    )
    return {row.enrollment_id: row for row in (await session.execute(statement)).scalars()}


async def events_of_enrollments(
    session: AsyncSession, enrollment_ids: Sequence[str], *, ending_after: datetime
) -> Sequence[tuple[DrEvent, EventDelivery, Ven]]:
    """The events delivered (or to be delivered) to these enrollments' VENs that end after
    ``ending_after``, soonest first (ends computed in Python, as in ``deliveries_of_ven``)."""
    if not enrollment_ids:
        return []
    statement = (
        select(DrEvent, EventDelivery, Ven)
        .join(EventDelivery, EventDelivery.event_id == DrEvent.id)
        .join(Ven, Ven.id == EventDelivery.ven_row_id)
        .where(
            Ven.enrollment_id.in_(enrollment_ids),
            DrEvent.start > ending_after - timedelta(minutes=MAX_EVENT_MINUTES),
        )
        .order_by(DrEvent.start, DrEvent.id)
    )
    rows = (await session.execute(statement)).all()
    return [
        (event, delivery, ven)
        for event, delivery, ven in rows
        if event.start + timedelta(minutes=event.duration_minutes) > ending_after
    ]


async def customer_deliveries_of_event(
    session: AsyncSession, *, customer_id: str, event_id: str
) -> Sequence[tuple[EventDelivery, Ven]]:
    """The event's deliveries to the customer's own VENs, locked until commit."""
    statement = (
        select(EventDelivery, Ven)
        .join(Ven, Ven.id == EventDelivery.ven_row_id)
        .join(Enrollment, Enrollment.id == Ven.enrollment_id)
        .where(EventDelivery.event_id == event_id, Enrollment.customer_id == customer_id)
        .order_by(Ven.ven_name)
        .with_for_update(of=EventDelivery)
    )
    return [(delivery, ven) for delivery, ven in (await session.execute(statement)).all()]


async def enrollment_ids_of_customer(session: AsyncSession, customer_id: str) -> Sequence[str]:
    statement = select(Enrollment.id).where(Enrollment.customer_id == customer_id)
    return (await session.execute(statement)).scalars().all()


async def devices_of_program(session: AsyncSession, program_row_id: str) -> Sequence[Any]:
    """(enrollment id, make, model) of each provisioned VEN of the program."""
    statement = (
        select(Ven.enrollment_id, Device.make, Device.model)
        .join(Enrollment, Enrollment.id == Ven.enrollment_id)
        .join(Device, Device.id == Enrollment.device_row_id)
        .where(Ven.program_row_id == program_row_id, Ven.status == VenStatus.PROVISIONED)
    )
    return (await session.execute(statement)).all()


async def latest_readings(
    session: AsyncSession,
    *,
    since: datetime,
    program_row_id: str | None = None,
    enrollment_ids: Sequence[str] | None = None,
) -> Sequence[DeviceReading]:
    """The newest sample since ``since`` of each (enrollment, measurement), of a program's
    provisioned VENs or of some enrollments: one grouped query on the timestamp index."""
    newest = select(
        DeviceReading.enrollment_id,
        DeviceReading.measurement,
        func.max(DeviceReading.timestamp).label("newest"),
    ).where(DeviceReading.timestamp >= since)
    if program_row_id is not None:
        newest = newest.join(Ven, Ven.enrollment_id == DeviceReading.enrollment_id).where(
            Ven.program_row_id == program_row_id, Ven.status == VenStatus.PROVISIONED
        )
    if enrollment_ids is not None:
        newest = newest.where(DeviceReading.enrollment_id.in_(enrollment_ids))
    latest = newest.group_by(DeviceReading.enrollment_id, DeviceReading.measurement).subquery()
    statement = select(DeviceReading).join(
        latest,
        (DeviceReading.enrollment_id == latest.c.enrollment_id)
        & (DeviceReading.measurement == latest.c.measurement)
        & (DeviceReading.timestamp == latest.c.newest),
    )
    return (await session.execute(statement)).scalars().all()


async def mean_power_during(
    session: AsyncSession, enrollment_ids: Sequence[str], *, start: datetime, end: datetime
) -> Sequence[Any]:
    """(enrollment id, scale, unit, mean value) of ``power_real`` in [start, end)."""
    if not enrollment_ids:
        return []
    statement = (
        select(
            DeviceReading.enrollment_id,
            DeviceReading.scale,
            DeviceReading.unit,
            func.avg(DeviceReading.value),
        )
        .where(
            DeviceReading.enrollment_id.in_(enrollment_ids),
            DeviceReading.measurement == "power_real",
            DeviceReading.timestamp >= start,
            DeviceReading.timestamp < end,
        )
        .group_by(DeviceReading.enrollment_id, DeviceReading.scale, DeviceReading.unit)
    )
    return (await session.execute(statement)).all()
