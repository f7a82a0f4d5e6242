"""Aggregation, the "virtual power plant": what a program's devices can give now, from their
newest telemetry, and what they gave during an event.

- A device is **online** while its newest sample is at most ``program_server_online_reports``
  report intervals old.
- **availableKw**: for each online battery above its reserve, the swing from its present real
  power to full discharge: ``max_discharge_kw + power_kw`` (``power_real`` is positive while it
  draws from the grid), at least 0.
- **availableKwh**: for each online battery, ``energy_kwh × (soc − reserve) / 100``, at least 0.
- Per event, **requestedKw** is ``targetKw`` times the devices it went to and that did not
  decline it (opted out by themselves, their customer or their preferences); **deliveredKw** is
  the sum over those devices of their mean export (``−power_real``, kW) during the event so far.
The model limits come from the OpenVPP registry (the device model's capabilities).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import format_units
from core.db import utc_now
from programs.deps import ProgramServices
from programs.registry import registry_of
from programs.vtn import repository
from programs.vtn.events import end_of
from programs.vtn.models import DrEvent, EventDelivery, OptResponse, Ven
from programs.vtn.preferences import Limits
from registry_client.routing import model_id_of

_SCALE = {"k": 1.0, "M": 1000.0, "G": 1_000_000.0, "m": 1e-6}


def kw_of(value: float, *, unit: str | None, scale: str | None) -> float:
    """A ``power_real`` sample in kW, from the unit and scale its VEN declared (W by default)."""
    if unit and unit.upper() not in ("W", "WATT", "WATTS"):
        return value  # an unknown unit is taken as kW, the unit our devices declare
    return value * _SCALE.get(scale or "none", 0.001)


@dataclass(frozen=True)
class DeviceState:
    power_kw: float | None
    state_of_charge_percent: float | None
    reported_at: datetime | None


@dataclass(frozen=True)
class Capacity:
    devices: int
    online_devices: int
    available_kw: float
    available_kwh: float


def online_since(settings_report_seconds: float, online_reports: int) -> datetime:
    return utc_now() - timedelta(seconds=settings_report_seconds * online_reports)


async def device_states(
    session: AsyncSession, *, since: datetime, **scope: object
) -> dict[str, DeviceState]:
    """The newest power and state of charge since ``since`` per enrollment (``scope``:
    ``program_row_id`` or ``enrollment_ids``, as ``repository.latest_readings``)."""
    power: dict[str, float] = {}
    soc: dict[str, float] = {}
    when: dict[str, datetime] = {}
    for row in await repository.latest_readings(session, since=since, **scope):  # type: ignore[arg-type]
        if row.measurement == "power_real":
            power[row.enrollment_id] = power.get(row.enrollment_id, 0.0) + kw_of(
                row.value, unit=row.unit, scale=row.scale
            )
        elif row.measurement == "state_of_charge":
            soc[row.enrollment_id] = row.value
        when[row.enrollment_id] = max(when.get(row.enrollment_id, row.timestamp), row.timestamp)
    return {
        enrollment: DeviceState(
            power_kw=power.get(enrollment),
            state_of_charge_percent=soc.get(enrollment),
            reported_at=at,
        )
        for enrollment, at in when.items()
    }


async def program_capacity(
    session: AsyncSession, *, services: ProgramServices, program_row_id: str, since: datetime
) -> Capacity:
    devices = await repository.devices_of_program(session, program_row_id)
    states = await device_states(session, since=since, program_row_id=program_row_id)
    limits = await repository.preferences_of(session, [d.enrollment_id for d in devices])
    registry = registry_of(services.chain)
    models: dict[tuple[str, str], tuple[float, float] | None] = {}
    available_kw = available_kwh = 0.0
    for enrollment_id, make, model in devices:
        state = states.get(enrollment_id)
        if state is None:
            continue
        if (make, model) not in models:
            record = await registry.device_model(model_id_of(make, model))
            models[(make, model)] = (
                (
                    float(format_units(record.max_discharge_w, 3)),
                    float(format_units(record.energy_wh, 3)),
                )
                if record is not None
                else None
            )
        limits_of = models[(make, model)]
        if limits_of is None or state.state_of_charge_percent is None:
            continue
        max_kw, energy_kwh = limits_of
        reserve = Limits.of(limits.get(enrollment_id)).reserve_soc_percent
        above = state.state_of_charge_percent - reserve
        if above > 0:
            available_kw += max(0.0, max_kw + (state.power_kw or 0.0))
            available_kwh += energy_kwh * above / 100
    return Capacity(
        devices=len(devices),
        online_devices=len(states),
        available_kw=round(available_kw, 3),
        available_kwh=round(available_kwh, 3),
    )


@dataclass(frozen=True)
class EventPerformance:
    requested_kw: float | None
    delivered_kw: float | None


def dispatched(deliveries: list[tuple[EventDelivery, Ven]]) -> list[str]:
    """The enrollments an event went to and that did not decline it."""
    return [
        ven.enrollment_id
        for delivery, ven in deliveries
        if delivery.opted_out_by is None and delivery.response != OptResponse.OPT_OUT
    ]


async def event_performance(
    session: AsyncSession, event: DrEvent, deliveries: list[tuple[EventDelivery, Ven]]
) -> EventPerformance:
    enrollments = dispatched(deliveries)
    requested = None if event.target_kw is None else round(event.target_kw * len(enrollments), 3)
    now = utc_now()
    if now < event.start:
        return EventPerformance(requested_kw=requested, delivered_kw=None)
    rows = await repository.mean_power_during(
        session, enrollments, start=event.start, end=min(end_of(event), now)
    )
    delivered = -sum(kw_of(float(mean), unit=unit, scale=scale) for _e, scale, unit, mean in rows)
    return EventPerformance(requested_kw=requested, delivered_kw=round(delivered, 3))
