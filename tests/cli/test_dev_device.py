"""``ovpp-wallet dev device``: the simulated home battery, built from an ACTIVE enrollment's
connection parameters only, registers, opts in to an event within its customer's limits,
discharges at the event's level, and its reported state of charge follows down to the floor
the event carries; an enrollment that is not an ACTIVE OpenADR 2.0b one runs nothing."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid

from api.container import Services
from devsupport.battery import BatteryModel, SimulatedBattery, run_battery
from programs.vtn.customer import enrollment_for_device
from tests.support.cli import ovpp_wallet
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import (
    EVENTS,
    SET_PREFERENCES,
    active_openadr_enrollment,
    create_event_at,
    demo_admin,
    eventually,
    program_server,
    readings,
    response_of,
)


async def test_the_battery_discharges_within_its_limits_and_reports_it(
    client,
    relayer,
    registry_demo,
    services: Services,
    settings,
    demo_issuer: TestIssuer,
    deployer,
    contracts,
) -> None:
    admin = demo_admin(demo_issuer)
    customer, program, active = await active_openadr_enrollment(
        client, demo_issuer, deployer, contracts, services
    )
    body = await gql(
        client,
        SET_PREFERENCES,
        {"input": {"enrollmentId": active["id"], "reserveSocPercent": 79}},
        token=customer.token,
    )
    assert body["data"]["setEnrollmentPreferences"]["reserveSocPercent"] == 79, body
    event = await create_event_at(
        client, admin, program, start=dt.datetime.now(dt.UTC), type="LOAD_DISPATCH", targetKw=9
    )
    async with services.db.session() as session:
        parameters, make, model = await enrollment_for_device(session, active["id"])
    assert parameters == active["connectionParameters"]
    battery = SimulatedBattery(model=BatteryModel.of(make, model), soc_percent=80.0)
    assert battery.model == BatteryModel(max_discharge_kw=5.0, energy_kwh=13.5)

    stop = asyncio.Event()
    async with program_server(services.db, settings):
        running = asyncio.create_task(
            run_battery(parameters, battery, stop=stop, tick_seconds=0.2, speed=8)
        )
        try:

            async def opted_in() -> bool:
                body = await gql(client, EVENTS, {"program": program}, token=admin)
                (seen,) = [
                    e for e in body["data"]["utilityAdmin"]["events"] if e["id"] == event["id"]
                ]
                return response_of(seen, parameters["venName"])["response"] == "OPT_IN"

            await eventually(opted_in, timeout=settings.program_server_poll_seconds + 5)

            async def discharged_to_the_floor() -> list:
                rows = await readings(services, active["id"])
                soc = [r.value for r in rows if r.measurement == "state_of_charge"]
                return rows if soc and soc[-1] == 79.0 else []

            rows, _ = await eventually(discharged_to_the_floor, timeout=60)
        finally:
            stop.set()
            await running
    power = [r.value for r in rows if r.measurement == "power_real"]
    assert -5.0 in power  # 9 kW asked, 5 kW the model's limit
    assert min(r.value for r in rows if r.measurement == "state_of_charge") == 79.0
    assert battery.power_kw == 0.0  # at the floor it stops


def test_the_command_runs_only_for_an_active_openadr_enrollment(settings) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "OVPP_ENVIRONMENT": "development",
        "OVPP_DATA_DIR": str(settings.data_dir),
        "OVPP_DATABASE_URL": settings.resolved_database_url,
        **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"},  # the checkout under test
    }
    done = ovpp_wallet(env, "dev", "device", "--enrollment", str(uuid.uuid4()))
    assert done.returncode == 1 and "no ACTIVE OpenADR 2.0b enrollment" in done.stderr, done
