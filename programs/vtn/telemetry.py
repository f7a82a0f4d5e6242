"""Telemetry: the reports VENs offer (oadrRegisterReport) and the samples they send
(oadrUpdateReport), stored in ``device_readings`` for the retention configured.

The program server asks for real power (``power_real``, per resource, in the unit and scale the
VEN declares: positive when the site draws from the grid, negative when it exports) and state
of charge (storage). The streams it asked for are stored, so samples keep being accepted after a
restart, and only a VEN's own streams: a VEN cannot write another's readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.db import new_id, utc_now
from programs.vtn import repository
from programs.vtn.models import ReportStream, Ven
from programs.vtn.service import VenIdentity

MEASUREMENTS = {
    "power_real": "power_real",
    "realpower": "power_real",
    "state_of_charge": "state_of_charge",
    "stateofcharge": "state_of_charge",
}
"""The measurements stored, by the description a VEN gives (OpenLEADR's ``RealPower`` and a
custom ``state_of_charge``), normalized."""


def wanted_measurement(description: str | None) -> str | None:
    """Our name for a measurement the program server asks for, else ``None`` (not asked)."""
    if not description:
        return None
    return MEASUREMENTS.get(description.replace(" ", "").replace("-", "_").lower())


@dataclass(frozen=True)
class OfferedStream:
    """One stream of a report the VEN offered and the program server asked for."""

    report_request_id: str
    r_id: str
    resource_id: str
    measurement: str
    unit: str | None
    scale: str | None
    reading_type: str | None


async def register_streams(
    session: AsyncSession, ven: Ven, streams: Iterable[OfferedStream]
) -> None:
    await repository.replace_report_streams(
        session,
        ven.id,
        [
            ReportStream(
                ven_row_id=ven.id,
                report_request_id=s.report_request_id,
                r_id=s.r_id,
                resource_id=s.resource_id,
                measurement=s.measurement,
                unit=s.unit,
                scale=s.scale,
                reading_type=s.reading_type,
            )
            for s in streams
        ],
    )


@dataclass(frozen=True)
class Sample:
    report_request_id: str
    r_id: str
    timestamp: datetime
    value: float


class StreamCache:
    """The report streams of each VEN, kept in the process: they change only when the VEN
    registers its reports (``forget`` then) and are kept per registration (a VEN that registers
    again, here or in another process, gets a new ``registration_id`` and its streams are read
    again; OpenLEADR's VEN registers its reports after each registration). Whether the VEN may
    send at all is not cached: its lookup reads that on every message."""

    def __init__(self) -> None:
        self._by_ven: dict[str, tuple[str | None, dict[tuple[str, str], Any]]] = {}

    async def of(self, connection: AsyncConnection, ven: VenIdentity) -> dict[tuple[str, str], Any]:
        cached = self._by_ven.get(ven.row_id)
        if cached is not None and cached[0] == ven.registration_id:
            return cached[1]
        rows = await repository.streams_of_ven(connection, ven.row_id)
        streams = {(row.report_request_id, row.r_id): row for row in rows}
        self._by_ven[ven.row_id] = (ven.registration_id, streams)
        return streams

    def forget(self, ven_row_id: str) -> None:
        self._by_ven.pop(ven_row_id, None)


async def store_samples(
    connection: AsyncConnection, ven: VenIdentity, cache: StreamCache, samples: Sequence[Sample]
) -> int:
    """Store the samples of the VEN's own streams (others are ignored) in one statement on an
    autocommit connection; returns how many."""
    streams = await cache.of(connection, ven)
    rows: list[dict[str, Any]] = []
    for sample in samples:
        stream = streams.get((sample.report_request_id, sample.r_id))
        if stream is None:
            continue
        rows.append(
            {
                "id": new_id(),
                "enrollment_id": ven.enrollment_id,
                "resource_id": stream.resource_id,
                "measurement": stream.measurement,
                "timestamp": sample.timestamp,
                "value": float(sample.value),
                "unit": stream.unit,
                "scale": stream.scale,
                "quality": stream.reading_type,
            }
        )
    await repository.insert_readings(connection, rows)
    return len(rows)


async def purge_readings(session: AsyncSession, *, retention_days: int) -> int:
    """Delete the samples older than the retention; returns how many."""
    return await repository.delete_readings_before(
        session, utc_now() - timedelta(days=retention_days)
    )
