"""The customer's side of the program server (SMARTFlex: the customer sets the limits, the
program schedules within them): preferences reach the device in each event's CHARGE_STATE
signal, an event outside them is never sent to it, an opted-out event is sent again cancelled
(or never sent), opting out after the start is refused, and every read and write is walled to
the customer's own enrollments."""

from __future__ import annotations

import datetime as dt

from api.container import Services
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import (
    CUSTOMER_EVENTS,
    EVENTS,
    OPT_OUT,
    SET_PREFERENCES,
    active_openadr_enrollment,
    create_event_at,
    demo_admin,
    eventually,
    program_server,
    received,
    response_of,
    running_ven,
    signals_of,
    ven_of,
)
from tests.support.wallets import new_customer


def _hh_mm(moment: dt.datetime) -> str:
    return moment.strftime("%H:%M")


async def test_preferences_and_opt_out_shape_what_the_device_gets(
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
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    ready_by = now + dt.timedelta(hours=10)
    preferences = {
        "enrollmentId": active["id"],
        "reserveSocPercent": 35,
        "readyBy": _hh_mm(ready_by),
        "targetSocPercent": 80,
    }
    body = await gql(client, SET_PREFERENCES, {"input": preferences}, token=customer.token)
    assert body["data"]["setEnrollmentPreferences"] == {
        "__typename": "EnrollmentPreferences",
        "reserveSocPercent": 35,
        "readyBy": _hh_mm(ready_by),
        "targetSocPercent": 80,
    }, body
    for wrong, field in (
        ({"reserveSocPercent": 120}, "reserveSocPercent"),
        ({"readyBy": "7am"}, "readyBy"),
        ({"targetSocPercent": 10}, "targetSocPercent"),
    ):
        body = await gql(
            client, SET_PREFERENCES, {"input": {**preferences, **wrong}}, token=customer.token
        )
        assert body["data"]["setEnrollmentPreferences"]["field"] == field, body

    inside = await create_event_at(client, admin, program, start=now + dt.timedelta(minutes=2))
    # Still running at readyBy: outside the customer's limits.
    outside = await create_event_at(
        client, admin, program, start=ready_by - dt.timedelta(minutes=10)
    )
    # Ends an hour before readyBy: the battery keeps the target, not only the reserve.
    before_ready = await create_event_at(
        client, admin, program, start=ready_by - dt.timedelta(hours=2)
    )
    declined = await create_event_at(client, admin, program, start=now + dt.timedelta(minutes=3))
    started = await create_event_at(client, admin, program, start=dt.datetime.now(dt.UTC))

    async with program_server(services.db, settings):
        ven = ven_of(active["connectionParameters"])
        async with running_ven(ven):

            async def all_received() -> bool:
                return all(received(ven, e["id"]) for e in (inside, before_ready, declined))

            await eventually(all_received, timeout=settings.program_server_poll_seconds + 5)
            assert signals_of(received(ven, inside["id"])[0]) == {"SIMPLE": 2, "CHARGE_STATE": 35}
            assert signals_of(received(ven, before_ready["id"])[0])["CHARGE_STATE"] == 80
            assert received(ven, outside["id"]) == []

            body = await gql(client, OPT_OUT, {"id": declined["id"]}, token=customer.token)
            opted = body["data"]["optOut"]
            assert opted["__typename"] == "OptedOut", body
            assert opted["events"] == [
                {
                    "id": declined["id"],
                    "response": "OPT_OUT",
                    "optedOutBy": "CUSTOMER",
                    "status": "SCHEDULED",
                }
            ]

            async def cancelled_for_it() -> bool:
                copies = received(ven, declined["id"])
                return copies[-1]["event_descriptor"]["event_status"] == "cancelled"

            await eventually(cancelled_for_it, timeout=settings.program_server_poll_seconds + 5)
            body = await gql(client, OPT_OUT, {"id": started["id"]}, token=customer.token)
            assert body["data"]["optOut"]["__typename"] == "EventAlreadyStarted", body

            admin_view = await gql(client, EVENTS, {"program": program}, token=admin)
            by_id = {e["id"]: e for e in admin_view["data"]["utilityAdmin"]["events"]}
            ven_name = active["connectionParameters"]["venName"]
            assert response_of(by_id[declined["id"]], ven_name)["response"] == "OPT_OUT"
            assert response_of(by_id[outside["id"]], ven_name)["response"] == "OPT_OUT"

    body = await gql(client, CUSTOMER_EVENTS, token=customer.token)
    (mine,) = [e for e in body["data"]["viewer"]["enrollments"] if e["id"] == active["id"]]
    assert mine["preferences"] == {
        "reserveSocPercent": 35,
        "readyBy": _hh_mm(ready_by),
        "targetSocPercent": 80,
    }
    events = {e["id"]: e for e in mine["events"]}
    assert events[outside["id"]]["optedOutBy"] == "PREFERENCES"
    assert events[outside["id"]]["response"] == "OPT_OUT"
    assert events[declined["id"]]["optedOutBy"] == "CUSTOMER"
    assert events[inside["id"]]["socFloorPercent"] == 35
    assert events[inside["id"]]["signal"] == "SIMPLE" and events[inside["id"]]["level"] == 2
    assert events[started["id"]]["status"] == "ACTIVE"


async def test_another_customer_cannot_read_or_change_them(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer,
    contracts,
) -> None:
    admin = demo_admin(demo_issuer)
    _owner, program, active = await active_openadr_enrollment(
        client, demo_issuer, deployer, contracts, services
    )
    event = await create_event_at(
        client, admin, program, start=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    intruder = await new_customer(client, demo_issuer, deployer, contracts)
    body = await gql(
        client,
        SET_PREFERENCES,
        {"input": {"enrollmentId": active["id"], "reserveSocPercent": 90}},
        token=intruder.token,
    )
    assert body["data"]["setEnrollmentPreferences"] == {
        "__typename": "InvalidInput",
        "message": "no such enrollment",
        "field": "enrollmentId",
    }
    body = await gql(client, OPT_OUT, {"id": event["id"]}, token=intruder.token)
    assert body["data"]["optOut"]["field"] == "eventId", body
    body = await gql(client, CUSTOMER_EVENTS, token=intruder.token)
    assert body["data"]["viewer"]["enrollments"] == []
    reader = demo_issuer.mint(sub=intruder.subject, scope="wallet:read")
    body = await gql(client, OPT_OUT, {"id": event["id"]}, token=reader)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
