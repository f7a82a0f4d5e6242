"""A Stripe webhook's intake: the event is stored once, by one statement committed by itself,
however many times and however concurrently Stripe delivers it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event
from sqlmodel import func, select

from api.container import Services
from onramp.models import StripeEvent
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.stripe import signed_event


def new_event() -> tuple[str, bytes, str]:
    event_id = f"evt_intake_{time.time_ns()}"
    body, signature = signed_event(
        STRIPE_WEBHOOK_SECRET,
        event_type="customer.created",  # nothing the onramp acts on
        obj={"object": "customer", "id": f"cus_{time.time_ns()}"},
        event_id=event_id,
    )
    return event_id, body, signature


async def post(client, body: bytes, signature: str):  # type: ignore[no-untyped-def]
    return await client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )


async def stored(services: Services, event_id: str) -> int:
    async with services.db.session() as session:
        statement = (
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.stripe_event_id == event_id)
        )
        return int((await session.execute(statement)).scalar_one())


@contextlib.contextmanager
def statements_run(services: Services) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement sent while the block runs, with its isolation level option."""
    seen: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, _parameters, context, _executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append((statement, context.execution_options.get("isolation_level")))

    engine = services.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def test_concurrent_deliveries_of_one_event_all_get_200_and_store_it_once(
    client, services: Services
) -> None:
    event_id, body, signature = new_event()

    responses = await asyncio.gather(*(post(client, body, signature) for _ in range(12)))

    assert [response.status_code for response in responses] == [200] * 12
    duplicates = sorted(response.json()["duplicate"] for response in responses)
    assert duplicates == [False] + [True] * 11  # exactly one stored it
    assert await stored(services, event_id) == 1


async def test_an_event_is_stored_by_one_statement_committed_by_itself(
    client, services: Services
) -> None:
    """A query-count test: the intake is one ``INSERT … ON CONFLICT DO NOTHING`` in autocommit
    (no ``BEGIN``/``COMMIT`` round trips, no read before it), first time or redelivered."""
    event_id, body, signature = new_event()

    for expected_duplicate in (False, True):
        with statements_run(services) as seen:
            response = await post(client, body, signature)
        assert response.status_code == 200
        assert response.json()["duplicate"] is expected_duplicate
        assert len(seen) == 1, seen
        statement, isolation = seen[0]
        assert statement.lstrip().upper().startswith("INSERT INTO STRIPE_EVENTS")
        assert "ON CONFLICT DO NOTHING" in statement.upper()
        assert isolation == "AUTOCOMMIT"
    assert await stored(services, event_id) == 1
