"""The program server end to end, over plain HTTP (development): a real OpenLEADR VEN built
only from an ACTIVE enrollment's connection parameters registers, gets the administrator's
event within the poll interval and opts in, reports telemetry, survives a restart of the
program server, and can no longer register once unenrolled; a VEN nobody provisioned is
refused; another utility's administrator cannot reach the program's events."""

from __future__ import annotations

import datetime as dt
from uuid import uuid4

from sqlmodel import select

from api.container import Services
from core.db import utc_now
from programs.vtn.models import DeviceReading, Ven, VenStatus
from programs.vtn.telemetry import purge_readings
from tests.support.enrollment import program_id
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import (
    CANCEL_EVENT,
    EVENTS,
    active_openadr_enrollment,
    both_measurements,
    cancelled_seen,
    demo_admin,
    event_starting_soon,
    eventually,
    more_readings,
    program_server,
    readings,
    response_of,
    running_ven,
    unenroll,
    ven_of,
)


async def test_a_ven_from_an_active_enrollment_registers_answers_events_and_reports(
    client,
    relayer,
    registry_demo,
    services: Services,
    settings,
    demo_issuer: TestIssuer,
    other_issuer: TestIssuer,
    deployer,
    contracts,
) -> None:
    admin = demo_admin(demo_issuer)
    # An event announced before the device joins reaches it too.
    early = await event_starting_soon(
        client, admin, await program_id(services, "dr-battery-2026"), key=f"early-{uuid4()}"
    )
    customer, program, active = await active_openadr_enrollment(
        client, demo_issuer, deployer, contracts, services
    )
    parameters = active["connectionParameters"]
    assert parameters["vtnUrl"] == settings.resolved_program_server_url
    async with program_server(services.db, settings) as running:
        stranger = ven_of({**parameters, "venName": "ven-0123456789abcdef"})
        async with running_ven(stranger):
            assert not stranger.registered  # OpenADR's refusal: 452, no registrationID

        ven = ven_of(parameters)
        async with running_ven(ven):
            assert ven.registered
            async with services.db.session() as session:
                row = (
                    await session.execute(select(Ven).where(Ven.ven_name == parameters["venName"]))
                ).scalar_one()
            assert row.ven_id == ven.client.ven_id and row.enrollment_id == active["id"]

            created = await event_starting_soon(client, admin, program, key="event-1")
            assert created["__typename"] == "DemandResponseEvent", created
            assert created["status"] == "SCHEDULED" or created["status"] == "ACTIVE"
            assert parameters["venName"] in [r["venName"] for r in created["responses"]]

            async def answered() -> dict | None:
                body = await gql(client, EVENTS, {"program": program}, token=admin)
                event = next(
                    e for e in body["data"]["utilityAdmin"]["events"] if e["id"] == created["id"]
                )
                ours = response_of(event, parameters["venName"])
                return ours if ours["response"] == "OPT_IN" else None

            event, took = await eventually(
                answered, timeout=settings.program_server_poll_seconds + 3
            )
            assert took <= settings.program_server_poll_seconds + 2  # within the poll interval
            received = {e["event_descriptor"]["event_id"]: e for e in ven.events}
            assert early["id"] in received
            signal = received[created["id"]]["event_signals"][0]
            assert (
                signal["signal_name"] == "SIMPLE" and signal["intervals"][0]["signal_payload"] == 2
            )
            assert event["respondedAt"] is not None

            stored, _ = await eventually(
                lambda: both_measurements(services, active["id"]), timeout=15
            )
            power = [r for r in stored if r.measurement == "power_real"]
            assert power[0].value == -2.5 and power[0].unit == "W" and power[0].scale == "k"
            assert power[0].quality == "Direct Read"
            await retention_keeps_only_recent_samples(services, power[0])

            # A restart keeps the registration, the event and the report streams.
            await running.shutdown()
            async with program_server(services.db, settings):
                before = len(await readings(services, active["id"]))
                await eventually(lambda: more_readings(services, active["id"], before), timeout=10)
                cancelled = await gql(client, CANCEL_EVENT, {"id": created["id"]}, token=admin)
                assert cancelled["data"]["cancelEvent"]["status"] == "CANCELLED", cancelled
                await eventually(lambda: cancelled_seen(ven), timeout=5)

                await unenroll(client, customer.token, active["id"])
                async with services.db.session() as session:
                    row = await session.get(Ven, row.id)
                assert row.status == VenStatus.DEPROVISIONED
                again = ven_of(parameters)
                async with running_ven(again):
                    assert not again.registered

    other_admin = other_issuer.mint(sub="other-admin", scope="utility:admin")
    refused = await event_starting_soon(client, other_admin, program, key="event-x")
    assert refused["__typename"] == "InvalidInput" and refused["field"] == "programId", refused
    body = await gql(client, EVENTS, {"program": program}, token=other_admin)
    assert body["data"] is None and "another utility" in body["errors"][0]["message"], body


async def retention_keeps_only_recent_samples(services: Services, sample: DeviceReading) -> None:
    old = DeviceReading(
        **{**sample.model_dump(exclude={"id"}), "timestamp": utc_now() - dt.timedelta(days=91)}
    )
    async with services.db.session() as session:
        session.add(old)
    async with services.db.session() as session:
        assert await purge_readings(session, retention_days=90) == 1
    async with services.db.session() as session:
        assert await session.get(DeviceReading, old.id) is None
        assert await session.get(DeviceReading, sample.id) is not None
