"""The customer's limits (SMARTFlex: the customer sets them, the program schedules within them).

An enrollment's preferences are ``reserve_soc_percent`` (the state of charge its battery keeps
during any event), and ``target_soc_percent`` by ``ready_by`` (a time of day, UTC). Each event
a VEN receives carries them as an OpenADR ``CHARGE_STATE`` signal (``setpoint``, percent): the
floor the battery keeps during that event, ``target_soc_percent`` when the event ends less than
``READY_BY_WINDOW`` before ``ready_by`` (so the battery is still at its target then), else
``reserve_soc_percent``. An event still running at ``ready_by`` is outside the limits: it is
not sent to that VEN (``OptedOutBy.PREFERENCES``). See docs/program-server.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.errors import InvalidInput
from programs.vtn import repository
from programs.vtn.models import (
    DrEvent,
    EnrollmentPreferences,
    EventDelivery,
    EventStatus,
    OptedOutBy,
    OptResponse,
)

READY_BY_WINDOW = timedelta(hours=4)
DEFAULT_RESERVE_SOC_PERCENT = 20
_HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Limits:
    reserve_soc_percent: int = DEFAULT_RESERVE_SOC_PERCENT
    ready_by: time | None = None
    target_soc_percent: int | None = None

    @classmethod
    def of(cls, row: EnrollmentPreferences | None) -> Limits:
        if row is None:
            return cls()
        return cls(
            reserve_soc_percent=row.reserve_soc_percent,
            ready_by=time.fromisoformat(row.ready_by) if row.ready_by else None,
            target_soc_percent=row.target_soc_percent,
        )


def _ready_by_times(limits: Limits, *, after: datetime, until: datetime) -> list[datetime]:
    """Each ``ready_by`` (UTC) in (after, until]."""
    if limits.ready_by is None or limits.target_soc_percent is None:
        return []
    day = after.replace(
        hour=limits.ready_by.hour, minute=limits.ready_by.minute, second=0, microsecond=0
    )
    found = []
    while day <= until:
        if day > after:
            found.append(day)
        day += timedelta(days=1)
    return found


def outside_limits(event: DrEvent, limits: Limits) -> bool:
    """The event would still run at the customer's ``ready_by``."""
    end = event.start + timedelta(minutes=event.duration_minutes)
    return bool(_ready_by_times(limits, after=event.start, until=end - timedelta(microseconds=1)))


def charge_floor(event: DrEvent, limits: Limits) -> int:
    """The state of charge (percent) the battery keeps during the event."""
    end = event.start + timedelta(minutes=event.duration_minutes)
    if limits.target_soc_percent is not None and _ready_by_times(
        limits, after=end - timedelta(microseconds=1), until=end + READY_BY_WINDOW
    ):
        return max(limits.reserve_soc_percent, limits.target_soc_percent)
    return limits.reserve_soc_percent


def settle(delivery: EventDelivery, event: DrEvent, limits: Limits, *, now: datetime) -> bool:
    """Withhold a not-started event outside the limits from the VEN, or give it back once the
    limits allow it; returns whether the delivery changed (the caller adds it). A customer's own
    opt-out and an event under way are left as they are."""
    if event.start <= now or event.status != EventStatus.ACTIVE:
        return False
    if delivery.opted_out_by == OptedOutBy.CUSTOMER:
        return False
    withheld = outside_limits(event, limits)
    if withheld == (delivery.opted_out_by == OptedOutBy.PREFERENCES):
        return False
    delivery.opted_out_by = OptedOutBy.PREFERENCES if withheld else None
    delivery.response = OptResponse.OPT_OUT if withheld else None
    delivery.responded_at = now if withheld else None
    delivery.revision += 1  # a VEN that has it gets the change
    return True


def _check(limits: Limits) -> None:
    if not 0 <= limits.reserve_soc_percent <= 100:
        raise InvalidInput("reserveSocPercent is 0 to 100", field="reserveSocPercent")
    if (limits.ready_by is None) != (limits.target_soc_percent is None):
        raise InvalidInput("readyBy and targetSocPercent go together", field="readyBy")
    if limits.target_soc_percent is not None and not (
        limits.reserve_soc_percent <= limits.target_soc_percent <= 100
    ):
        raise InvalidInput(
            "targetSocPercent is between reserveSocPercent and 100", field="targetSocPercent"
        )


def parse_ready_by(value: str | None) -> time | None:
    if value is None:
        return None
    if not _HH_MM.match(value):
        raise InvalidInput("readyBy is a time of day, HH:MM (UTC)", field="readyBy")
    return time.fromisoformat(value)


async def set_preferences(
    session: AsyncSession, *, enrollment_id: str, limits: Limits
) -> EnrollmentPreferences:
    """Store the enrollment's limits (the caller checked the enrollment is the customer's);
    the device's events not yet started are settled again, and those it has get to it anew."""
    _check(limits)
    row = await session.get(EnrollmentPreferences, enrollment_id)
    if row is None:
        row = EnrollmentPreferences(enrollment_id=enrollment_id)
    row.reserve_soc_percent = limits.reserve_soc_percent
    row.ready_by = limits.ready_by.strftime("%H:%M") if limits.ready_by else None
    row.target_soc_percent = limits.target_soc_percent
    row.updated_at = utc_now()
    session.add(row)
    ven = await repository.ven_of_enrollment(session, enrollment_id)
    if ven is not None:
        now = utc_now()
        for delivery, event in await repository.deliveries_of_ven(
            session, ven.id, ending_after=now
        ):
            changed = settle(delivery, event, limits, now=now)
            if not changed and event.start > now and delivery.delivered_modification >= 0:
                delivery.revision += 1  # a new floor for an event it has
                changed = True
            if changed:
                session.add(delivery)
    await session.flush()
    return row
