"""The app webhooks' SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from appwebhooks.models import (
    ERROR_LENGTH,
    DeliveryStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from core.db import insert_if_absent

DELIVERIES = WebhookDelivery.__table__


async def live_endpoints_of(session: AsyncSession, tenant_ids: Iterable[str]) -> list[Row[Any]]:
    """(id, tenant id, event types) of these utilities' enabled, undeleted endpoints."""
    statement = select(
        WebhookEndpoint.id, WebhookEndpoint.tenant_id, WebhookEndpoint.event_types
    ).where(
        WebhookEndpoint.tenant_id.in_(sorted(set(tenant_ids))),
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.deleted_at.is_(None),
    )
    return list((await session.execute(statement)).all())


async def insert_event(session: AsyncSession, values: dict[str, Any]) -> bool:
    """The event, unless one with its ``dedupe_key`` exists (then ``False``)."""
    return await insert_if_absent(session, WebhookEvent.__table__, values)


async def insert_deliveries(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(DELIVERIES.insert(), rows)


async def endpoints_of(session: AsyncSession, tenant_id: str) -> list[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.deleted_at.is_(None))
        .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
    )
    return list((await session.execute(statement)).scalars())


async def endpoint_of(
    session: AsyncSession, *, tenant_id: str, endpoint_id: str
) -> WebhookEndpoint | None:
    statement = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id,
        WebhookEndpoint.tenant_id == tenant_id,
        WebhookEndpoint.deleted_at.is_(None),
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def fail_pending_of_endpoint(session: AsyncSession, endpoint_id: str, *, reason: str) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None, last_error=reason)
    )


async def deliveries_page(
    session: AsyncSession, *, tenant_id: str, first: int, after: tuple[datetime, str] | None
) -> list[WebhookDelivery]:
    """Newest first, ``first + 1`` rows (whether another page exists)."""
    statement = select(WebhookDelivery).where(WebhookDelivery.tenant_id == tenant_id)
    if after is not None:
        created, row_id = after
        statement = statement.where(
            or_(
                WebhookDelivery.created_at < created,
                and_(WebhookDelivery.created_at == created, WebhookDelivery.id < row_id),
            )
        )
    statement = statement.order_by(
        WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()
    ).limit(first + 1)
    return list((await session.execute(statement)).scalars())


# -- the worker --------------------------------------------------------------------------------


async def due_deliveries(session: AsyncSession, *, now: datetime, limit: int) -> list[str]:
    """Ids of PENDING deliveries due by ``now``, oldest due first; on PostgreSQL their rows
    locked, skipping those another worker is claiming."""
    statement = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars())


async def lease(session: AsyncSession, delivery_id: str, *, now: datetime, until: datetime) -> bool:
    """Claims one attempt: counts it and moves ``next_attempt_at`` to ``until`` (past the
    attempt's timeout). Guarded, so of two workers (SQLite has no SKIP LOCKED) one wins."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(attempts=WebhookDelivery.attempts + 1, next_attempt_at=until)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def attempt_material(session: AsyncSession, delivery_ids: Sequence[str]) -> list[Row[Any]]:
    """What posting each leased delivery needs: the delivery, its event, its endpoint."""
    statement = (
        select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(delivery_ids))
    )
    return list((await session.execute(statement)).all())


async def record_attempt(
    session: AsyncSession,
    delivery_id: str,
    *,
    attempt: int,
    values: dict[str, Any],
) -> None:
    """An attempt's outcome, only if the delivery is still at that attempt (a lease that
    outlived its worker may have been claimed again since)."""
    if values.get("last_error"):
        values = {**values, "last_error": values["last_error"][:ERROR_LENGTH]}
    await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.attempts == attempt,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(**values)
    )
