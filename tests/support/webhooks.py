"""App webhooks in tests: a fast delivery policy, endpoints made directly, delivery rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlmodel import select

from api.container import Services
from appwebhooks import service
from appwebhooks.delivery import DeliveryPolicy, RunningSender, start_app_webhooks
from appwebhooks.models import WebhookDelivery, WebhookEndpoint

FAST = DeliveryPolicy(
    max_attempts=8,
    retry_base_seconds=0.05,
    retry_max_seconds=0.2,
    timeout_seconds=2.0,
    allow_private=True,
)


async def add_endpoint(
    services: Services, tenant_id: str, url: str, event_types: list[str] | None = None
) -> tuple[WebhookEndpoint, str]:
    async with services.db.session() as session:
        return await service.create_endpoint(
            session,
            tenant_id=tenant_id,
            url=url,
            event_types=event_types or [],
            keyring=services.keyring,
            allow_private=True,
        )


async def deliveries_to(services: Services, endpoint_id: str) -> list[WebhookDelivery]:
    async with services.db.session() as session:
        statement = (
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.created_at)
        )
        return list((await session.execute(statement)).scalars())


async def wait_until_settled(
    services: Services, endpoint_id: str, *, count: int = 1, timeout: float = 30.0
) -> list[WebhookDelivery]:
    """The endpoint's deliveries once ``count`` exist and none is PENDING."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await deliveries_to(services, endpoint_id)
        if len(rows) >= count and all(row.status != "PENDING" for row in rows):
            return rows
        if time.monotonic() > deadline:
            states = [(row.status, row.attempts) for row in rows]
            raise AssertionError(f"deliveries not settled: {states}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def sending(
    services: Services, policy: DeliveryPolicy = FAST
) -> AsyncIterator[RunningSender]:
    running = await start_app_webhooks(services, name="test-app-webhooks", policy=policy)
    try:
        yield running
    finally:
        await running.shutdown()
