"""``programEvents``: the customer's app hears of their device's events as they are announced,
start, end, and are cancelled or declined; another customer hears nothing of them."""

from __future__ import annotations

import asyncio
import datetime as dt

from sqlalchemy import update

from api.container import Services
from programs.vtn.models import DrEvent
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import (
    CANCEL_EVENT,
    OPT_OUT,
    active_openadr_enrollment,
    create_event_at,
    demo_admin,
)
from tests.support.wallets import new_customer
from tests.support.websocket import connect, receive, subscribe

PROGRAM_EVENTS = "subscription { programEvents { change event { id enrollmentId status } } }"


async def next_change(socket, event_id: str) -> tuple[str, str]:
    """The next change of this event (the device also gets other tests' events not ended)."""
    while True:
        message = await receive(socket, timeout=10)
        if message["type"] == "ping":
            continue
        assert message["type"] == "next" and "errors" not in message["payload"], message
        update_ = message["payload"]["data"]["programEvents"]
        if update_["event"]["id"] == event_id:
            return update_["change"], update_["event"]["id"]


async def test_the_customer_hears_each_change_of_their_devices_events(
    ws_url: str,
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer,
    contracts,
) -> None:
    admin = demo_admin(demo_issuer)
    customer, program, _active = await active_openadr_enrollment(
        client, demo_issuer, deployer, contracts, services
    )
    intruder = await new_customer(client, demo_issuer, deployer, contracts)
    socket = await connect(ws_url, customer.token)
    other = await connect(ws_url, intruder.token)
    try:
        await subscribe(socket, "1", PROGRAM_EVENTS, {})
        await subscribe(other, "1", PROGRAM_EVENTS, {})
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        event = await create_event_at(client, admin, program, start=soon, minutes=1)
        assert await next_change(socket, event["id"]) == ("ANNOUNCED", event["id"])
        assert await next_change(socket, event["id"]) == ("STARTED", event["id"])
        # Let it end two seconds from now rather than in a minute.
        async with services.db.session() as session:
            await session.execute(
                update(DrEvent)
                .where(DrEvent.id == event["id"])
                .values(start=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=58))
            )
        assert await next_change(socket, event["id"]) == ("ENDED", event["id"])

        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        cancelled = await create_event_at(client, admin, program, start=later)
        assert await next_change(socket, cancelled["id"]) == ("ANNOUNCED", cancelled["id"])
        await gql(client, CANCEL_EVENT, {"id": cancelled["id"]}, token=admin)
        assert await next_change(socket, cancelled["id"]) == ("CANCELLED", cancelled["id"])
        declined = await create_event_at(client, admin, program, start=later)
        assert await next_change(socket, declined["id"]) == ("ANNOUNCED", declined["id"])
        await gql(client, OPT_OUT, {"id": declined["id"]}, token=customer.token)
        assert await next_change(socket, declined["id"]) == ("OPTED_OUT", declined["id"])

        try:
            while True:  # nothing but pings: none of these events is theirs
                message = await receive(other, timeout=1.5)
                assert message["type"] == "ping", message
        except TimeoutError:
            pass
    finally:
        await asyncio.gather(socket.close(), other.close())
