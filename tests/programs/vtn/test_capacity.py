"""Aggregation: a program's capacity from its devices' newest telemetry (a device counts once
it reports, with the swing to full discharge and the energy above its reserve), the customer's
view of their device's state, and an event's requested kW against the kW its devices showed."""

from __future__ import annotations

import datetime as dt

import pytest

from api.container import Services
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import (
    CAPACITY,
    EVENT_PERFORMANCE,
    active_openadr_enrollment,
    both_measurements,
    create_event_at,
    demo_admin,
    eventually,
    program_server,
    running_ven,
    ven_of,
)

STATE = "{ viewer { enrollments { id deviceState { powerKw stateOfChargePercent online } } } }"


async def capacity(client, admin: str, program: str) -> dict:
    body = await gql(client, CAPACITY, {"program": program}, token=admin)
    assert "errors" not in body, body
    return body["data"]["utilityAdmin"]["programCapacity"]


async def test_capacity_follows_telemetry_and_events_show_what_devices_gave(
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
    customer, program, active = await active_openadr_enrollment(
        client, demo_issuer, deployer, contracts, services
    )
    event = await create_event_at(
        client, admin, program, start=dt.datetime.now(dt.UTC), level=1, targetKw=3.5
    )
    before = await capacity(client, admin, program)
    async with program_server(services.db, settings):
        async with running_ven(ven_of(active["connectionParameters"])):  # -2.5 kW, 64 %
            await eventually(lambda: both_measurements(services, active["id"]), timeout=15)
            after = await capacity(client, admin, program)
            body = await gql(client, EVENT_PERFORMANCE, {"program": program}, token=admin)

    assert after["devices"] == before["devices"]  # provisioned once ACTIVE
    assert after["onlineDevices"] == before["onlineDevices"] + 1
    # VS-13.5: 5 kW discharge, 13.5 kWh; discharging 2.5 kW already; reserve 20 %.
    assert after["availableKw"] == pytest.approx(before["availableKw"] + 5 + -2.5)
    assert after["availableKwh"] == pytest.approx(before["availableKwh"] + 13.5 * 0.44)

    (performance,) = [e for e in body["data"]["utilityAdmin"]["events"] if e["id"] == event["id"]]
    dispatched = [r for r in performance["responses"] if r["response"] != "OPT_OUT"]
    assert performance["requestedKw"] == pytest.approx(3.5 * len(dispatched))
    assert performance["deliveredKw"] == pytest.approx(2.5)  # only this device reported

    body = await gql(client, STATE, token=customer.token)
    (mine,) = [e for e in body["data"]["viewer"]["enrollments"] if e["id"] == active["id"]]
    assert mine["deviceState"] == {"powerKw": -2.5, "stateOfChargePercent": 64.0, "online": True}

    other_admin = other_issuer.mint(sub="other-admin", scope="utility:admin")
    body = await gql(client, CAPACITY, {"program": program}, token=other_admin)
    assert body["data"] is None and "another utility" in body["errors"][0]["message"], body
