"""The ingest of oadrUpdateReport (issue 19's 167 messages a second): one lookup of the VEN and
one insert per message, the VEN's report streams kept in the process; a VEN de-provisioned
after its streams were cached is refused at its next message, and nothing of it is stored."""

from __future__ import annotations

import datetime as dt

import aiohttp
from openleadr import objects
from openleadr.messaging import create_message
from sqlalchemy import event
from sqlmodel import select

from api.container import Services
from programs.models import Enrollment
from programs.vtn import service, telemetry
from programs.vtn.models import Ven
from tests.support.program_server import active_openadr_enrollment, program_server, readings

XML = {"content-type": "application/xml"}


def update_report(ven_id: str, at: dt.datetime) -> str:
    intervals = [
        objects.ReportInterval(
            dtstart=at, report_payload=objects.ReportPayload(r_id=r_id, value=value)
        )
        for r_id, value in (("p", -2.5), ("s", 64.0))
    ]
    report = objects.Report(
        report_request_id="rr-ingest",
        report_specifier_id="spec-ingest",
        report_name="TELEMETRY_USAGE",
        intervals=intervals,
        dtstart=at,
    )
    return create_message("oadrUpdateReport", ven_id=ven_id, request_id="req", reports=[report])


async def registered_with_streams(services: Services, enrollment_id: str) -> tuple[str, str]:
    """The enrollment's VEN registered, with its two streams: (its ven_id, its row id)."""
    async with services.db.session() as session:
        ven = (
            await session.execute(select(Ven).where(Ven.enrollment_id == enrollment_id))
        ).scalar_one()
        registration = await service.register(
            session, ven_name=ven.ven_name, ven_id=None, fingerprint=None, tls=False
        )
        await telemetry.register_streams(
            session,
            ven,
            [
                telemetry.OfferedStream(
                    "rr-ingest", r_id, "battery-1", measurement, unit, scale, None
                )
                for r_id, measurement, unit, scale in (
                    ("p", "power_real", "W", "k"),
                    ("s", "state_of_charge", "%", None),
                )
            ],
        )
    return registration.ven_id, ven.id


async def test_one_lookup_and_one_insert_per_report_and_a_deprovisioned_ven_is_refused_at_once(
    client, relayer, registry_demo, demo_issuer, deployer, contracts, services: Services, settings
) -> None:
    _, _, active = await active_openadr_enrollment(
        client, demo_issuer, deployer, contracts, services
    )
    ven_id, row_id = await registered_with_streams(services, active["id"])
    ours = (ven_id, row_id, active["id"])
    statements: list[str] = []

    def count(_conn, _cursor, statement: str, parameters, *_args) -> None:
        if any(key in str(parameters) for key in ours):  # not other tests' background work
            statements.append(statement)

    url = settings.resolved_program_server_url.rstrip("/") + "/EiReport"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    engine = services.db.engine.sync_engine
    async with program_server(services.db, settings), aiohttp.ClientSession() as http:

        async def send(at: dt.datetime) -> str:
            async with http.post(url, data=update_report(ven_id, at), headers=XML) as response:
                assert response.status == 200
                return await response.text()

        assert "oadrUpdatedReport" in await send(now)  # reads the streams once
        event.listen(engine, "before_cursor_execute", count)
        try:
            for minute in (1, 2):
                assert "oadrUpdatedReport" in await send(now + dt.timedelta(minutes=minute))
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert len(statements) == 4, statements  # per message: the VEN, the insert
        assert len(await readings(services, active["id"])) == 6

        async with services.db.session() as session:
            await service.deprovision(session, await session.get(Enrollment, active["id"]))
        assert "oadrRequestReregistration" in await send(now + dt.timedelta(minutes=3))
        assert len(await readings(services, active["id"])) == 6
