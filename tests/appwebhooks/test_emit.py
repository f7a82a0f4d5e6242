"""``emit``, the outbox's one way in (the indexer will call it for ``activity.received``): it
writes the event and one PENDING delivery per endpoint that wants the type, in the caller's
transaction, and nothing when no endpoint wants it."""

from __future__ import annotations

import pytest
from sqlmodel import select

from api.container import Services
from appwebhooks.models import EventType, WebhookDelivery, WebhookEvent
from appwebhooks.service import emit
from tests.support.utilities import fresh_utility
from tests.support.webhooks import add_endpoint, deliveries_to

ACTIVITY = {"walletAddress": "0x" + "ab" * 20, "amount": "1", "amountRaw": "1000000"}


async def test_emit_writes_the_event_and_a_pending_delivery_per_endpoint_wanting_it(
    services: Services,
) -> None:
    async with fresh_utility(services, audience="https://emit.test") as (_issuer, tenant):
        every, _ = await add_endpoint(services, tenant, "http://127.0.0.1:9/all")
        activity, _ = await add_endpoint(
            services, tenant, "http://127.0.0.1:9/activity", ["activity.received"]
        )
        enrollments, _ = await add_endpoint(
            services, tenant, "http://127.0.0.1:9/enrollments", ["enrollment.changed"]
        )
        async with services.db.session() as session:
            event_id = await emit(
                session, tenant, EventType.ACTIVITY_RECEIVED, ACTIVITY, dedupe_key="log-1"
            )
            again = await emit(
                session, tenant, EventType.ACTIVITY_RECEIVED, ACTIVITY, dedupe_key="log-1"
            )
        async with services.db.session() as session:
            event = await session.get(WebhookEvent, event_id)

    assert event_id is not None and event_id.startswith("msg_")
    assert again is None  # the same change emitted twice is one event
    assert event is not None
    assert (event.tenant_id, event.type, event.payload) == (tenant, "activity.received", ACTIVITY)
    for endpoint in (every, activity):
        (delivery,) = await deliveries_to(services, endpoint.id)
        assert (delivery.event_id, delivery.status, delivery.attempts) == (event_id, "PENDING", 0)
        assert delivery.next_attempt_at is not None
    assert await deliveries_to(services, enrollments.id) == []


async def test_emit_stores_nothing_for_a_utility_without_endpoints_or_a_rolled_back_change(
    services: Services,
) -> None:
    async with fresh_utility(services, audience="https://emit-none.test") as (_issuer, tenant):
        async with services.db.session() as session:
            assert await emit(session, tenant, EventType.ACTIVITY_RECEIVED, ACTIVITY) is None
        endpoint, _ = await add_endpoint(services, tenant, "http://127.0.0.1:9/all")
        with pytest.raises(RuntimeError):
            async with services.db.session() as session:
                rolled_back = await emit(session, tenant, EventType.ACTIVITY_RECEIVED, ACTIVITY)
                raise RuntimeError("the change that caused it fails")
        async with services.db.session() as session:
            events = (
                await session.execute(select(WebhookEvent).where(WebhookEvent.tenant_id == tenant))
            ).all()
            deliveries = (
                await session.execute(
                    select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
                )
            ).all()
    assert rolled_back is not None
    assert events == [] and deliveries == []
