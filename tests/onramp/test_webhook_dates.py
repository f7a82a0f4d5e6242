"""A Stripe webhook's signature is dated: within the tolerance (300 s) of now either way it is
taken, beyond it, in the past (a replay) or in the future (a replay waiting to happen), it gets
400 and nothing is stored. Stripe's SDK checks only the past."""

from __future__ import annotations

import time

import pytest
from sqlmodel import func, select

from api.container import Services
from onramp.models import StripeEvent
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.stripe import signed_event


async def stored(services: Services, event_id: str) -> int:
    async with services.db.session() as session:
        statement = (
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.stripe_event_id == event_id)
        )
        return int((await session.execute(statement)).scalar_one())


async def deliver(client, *, offset_seconds: int) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    event_id = f"evt_dated_{time.time_ns()}"
    body, signature = signed_event(
        STRIPE_WEBHOOK_SECRET,
        event_type="customer.created",  # nothing the onramp acts on
        obj={"object": "customer", "id": f"cus_{time.time_ns()}"},
        timestamp=int(time.time()) + offset_seconds,
        event_id=event_id,
    )
    response = await client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    return response.status_code, event_id


@pytest.mark.parametrize("offset_seconds", [-600, 400, 86_400 * 365])
async def test_a_signature_dated_beyond_the_tolerance_either_way_is_refused(
    client, services: Services, offset_seconds: int
) -> None:
    status, event_id = await deliver(client, offset_seconds=offset_seconds)

    assert status == 400
    assert await stored(services, event_id) == 0


@pytest.mark.parametrize("offset_seconds", [-200, 0, 200])
async def test_a_signature_within_the_tolerance_either_way_is_taken(
    client, services: Services, offset_seconds: int
) -> None:
    status, event_id = await deliver(client, offset_seconds=offset_seconds)

    assert status == 200
    assert await stored(services, event_id) == 1
