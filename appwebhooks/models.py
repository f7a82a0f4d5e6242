"""Tables of the app webhooks: a utility's endpoints, the outbox of events, and one delivery
per (event, endpoint), the log its administrator sees."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime, new_id, utc_now


def _timestamp(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class EventType(StrEnum):
    ACTIVITY_RECEIVED = "activity.received"
    TRANSACTION_FINAL = "transaction.final"
    ENROLLMENT_CHANGED = "enrollment.changed"


class DeliveryStatus(StrEnum):
    """PENDING (waiting for its next attempt) → DELIVERED (a 2xx) | FAILED (every attempt
    refused, or its endpoint deleted)."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


ERROR_LENGTH = 500


class WebhookEndpoint(SQLModel, table=True):
    """Where a utility receives its events. The signing secret is kept only sealed under the
    key-encryption key (AES-GCM, the endpoint's id as associated data); its plaintext is shown
    once, when made. A deleted endpoint stays (``deleted_at``) so its deliveries keep their log."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36, index=True)
    url: str = Field(max_length=2000)
    # Empty: every event type.
    event_types: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    sealed_secret: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_id: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    deleted_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class WebhookEvent(SQLModel, table=True):
    """One event in the outbox, written in the transaction of the change that causes it. Its
    id is the ``webhook-id`` every attempt to every endpoint carries; ``dedupe_key`` makes the
    same change emitted twice (two racing writers) one event."""

    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_tenant_created", "tenant_id", "created_at"),)

    id: str = Field(primary_key=True, max_length=40)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    type: str = Field(max_length=64)
    payload: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class WebhookDelivery(SQLModel, table=True):
    """An event's delivery to one endpoint: attempted until a 2xx or ``max attempts``. A claim
    leases it (``next_attempt_at`` moves past the attempt's timeout), so a worker that dies
    mid-attempt leaves it to be tried again, never lost."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_delivery_event_endpoint"),
        # The worker's claim: the due PENDING ones, oldest due first.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # The administrator's log, newest first.
        Index("ix_webhook_deliveries_tenant_created", "tenant_id", "created_at", "id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    event_id: str = Field(foreign_key="webhook_events.id", max_length=40)
    endpoint_id: str = Field(foreign_key="webhook_endpoints.id", max_length=36, index=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    event_type: str = Field(max_length=64)
    status: str = Field(default=DeliveryStatus.PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    last_response_status: int | None = None
    last_error: str | None = Field(default=None, max_length=ERROR_LENGTH)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    delivered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
