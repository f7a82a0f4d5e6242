"""Emitting events into the outbox, and a utility's endpoints.

``emit`` is the one way in: called inside the transaction of the change that causes the event
(a relayed job final, an enrollment's status, an incoming transfer the indexer saw), it writes
the event and one PENDING delivery per endpoint of the utility that wants its type, so the
change and its notification commit or roll back together: a crash loses neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from appwebhooks import repository
from appwebhooks.errors import EndpointNotFound, UnacceptableEndpointUrl
from appwebhooks.models import DeliveryStatus, EventType, WebhookDelivery, WebhookEndpoint
from appwebhooks.signing import new_secret, seal, secret_text
from appwebhooks.targets import check_endpoint_url
from core.db import new_id, utc_now
from core.errors import InvalidInput
from wallet.kms import KeyRing

MAX_ENDPOINTS_PER_UTILITY = 10
ENDPOINT_DELETED = "its endpoint was deleted"


@dataclass(frozen=True)
class Emission:
    """One event for a utility. ``payload`` is JSON and holds no secret; ``dedupe_key``, when
    given, makes a second emission of the same change (a racing writer) a no-op."""

    tenant_id: str
    type: EventType
    payload: dict[str, Any]
    dedupe_key: str | None = None


def new_message_id() -> str:
    """A ``webhook-id``: ``msg_`` and 32 hex digits."""
    return "msg_" + uuid.uuid4().hex


async def emit(
    session: AsyncSession,
    tenant_id: str,
    type: EventType,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
) -> str | None:
    """Queue one event for the utility's endpoints in the caller's transaction (only
    ``flush``-level writes; the caller commits). Returns the event id, or ``None`` when no
    endpoint of the utility wants this type (nothing is stored) or the ``dedupe_key`` was
    emitted already. The indexer calls it for ``activity.received``."""
    stored = await emit_many(session, [Emission(tenant_id, type, payload, dedupe_key)])
    return stored[0] if stored else None


async def emit_many(session: AsyncSession, emissions: Sequence[Emission]) -> list[str]:
    """``emit`` for a batch: one read of the utilities' endpoints, then the rows. Returns the
    ids of the events stored."""
    if not emissions:
        return []
    endpoints = await repository.live_endpoints_of(session, {e.tenant_id for e in emissions})
    now = utc_now()
    stored: list[str] = []
    deliveries: list[dict[str, Any]] = []
    for emission in emissions:
        wanting = [
            endpoint_id
            for endpoint_id, tenant_id, types in endpoints
            if tenant_id == emission.tenant_id and (not types or emission.type.value in types)
        ]
        if not wanting:
            continue
        event_id = new_message_id()
        inserted = await repository.insert_event(
            session,
            {
                "id": event_id,
                "tenant_id": emission.tenant_id,
                "type": emission.type.value,
                "payload": emission.payload,
                "dedupe_key": emission.dedupe_key,
                "created_at": now,
            },
        )
        if not inserted:
            continue
        stored.append(event_id)
        deliveries += [
            _pending_delivery(event_id, endpoint_id, emission, now=now) for endpoint_id in wanting
        ]
    await repository.insert_deliveries(session, deliveries)
    return stored


def _pending_delivery(
    event_id: str, endpoint_id: str, emission: Emission, *, now: datetime
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "event_id": event_id,
        "endpoint_id": endpoint_id,
        "tenant_id": emission.tenant_id,
        "event_type": emission.type.value,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": now,
        "last_response_status": None,
        "last_error": None,
        "created_at": now,
        "delivered_at": None,
    }


# -- a utility's endpoints ---------------------------------------------------------------------


def event_types_of(names: Sequence[str]) -> list[str]:
    """The event types named (refused when one is unknown), sorted; empty means all."""
    known = {t.value for t in EventType}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidInput(
            f"unknown event type {unknown[0]!r}: one of {', '.join(sorted(known))}",
            field="eventTypes",
        )
    return sorted(set(names))


async def create_endpoint(
    session: AsyncSession,
    *,
    tenant_id: str,
    url: str,
    event_types: Sequence[str],
    keyring: KeyRing,
    allow_private: bool,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (``whsec_…``), the only time the secret is shown."""
    url = check_endpoint_url(url, allow_private=allow_private)
    types = event_types_of(event_types)
    if len(await repository.endpoints_of(session, tenant_id)) >= MAX_ENDPOINTS_PER_UTILITY:
        raise UnacceptableEndpointUrl(
            f"a utility has at most {MAX_ENDPOINTS_PER_UTILITY} webhook endpoints: delete one"
        )
    endpoint_id = new_id()
    key = new_secret()
    sealed, kek_id = seal(key, endpoint_id=endpoint_id, keyring=keyring)
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        tenant_id=tenant_id,
        url=url,
        event_types=types,
        sealed_secret=sealed,
        kek_id=kek_id,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret_text(key)


async def endpoint_of(
    session: AsyncSession, *, tenant_id: str, endpoint_id: str
) -> WebhookEndpoint:
    """The utility's endpoint; another utility's id is ``EndpointNotFound`` like no id."""
    endpoint = await repository.endpoint_of(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    if endpoint is None:
        raise EndpointNotFound()
    return endpoint


async def rotate_secret(
    session: AsyncSession, *, tenant_id: str, endpoint_id: str, keyring: KeyRing
) -> tuple[WebhookEndpoint, str]:
    """A new secret for the endpoint, shown once; attempts from now on are signed with it."""
    endpoint = await endpoint_of(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    key = new_secret()
    endpoint.sealed_secret, endpoint.kek_id = seal(key, endpoint_id=endpoint.id, keyring=keyring)
    session.add(endpoint)
    await session.flush()
    return endpoint, secret_text(key)


async def delete_endpoint(
    session: AsyncSession, *, tenant_id: str, endpoint_id: str
) -> WebhookEndpoint:
    """The endpoint receives nothing more: its pending deliveries fail; its log stays."""
    endpoint = await endpoint_of(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    endpoint.deleted_at = utc_now()
    endpoint.enabled = False
    session.add(endpoint)
    await session.flush()
    await repository.fail_pending_of_endpoint(session, endpoint.id, reason=ENDPOINT_DELETED)
    return endpoint


async def endpoints(session: AsyncSession, tenant_id: str) -> list[WebhookEndpoint]:
    return await repository.endpoints_of(session, tenant_id)


async def deliveries(
    session: AsyncSession, *, tenant_id: str, first: int, after: tuple[datetime, str] | None
) -> list[WebhookDelivery]:
    """The utility's delivery log, newest first (``first + 1`` rows)."""
    return await repository.deliveries_page(session, tenant_id=tenant_id, first=first, after=after)
