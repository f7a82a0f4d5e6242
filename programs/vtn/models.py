"""Tables of the program server: which VENs may register (provisioning follows enrollment),
their registrations, demand-response events and each VEN's delivery of and answer to them,
the report streams VENs registered, and the telemetry they send."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, Float, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import UTCDateTime, new_id, utc_now


def _timestamp(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class VenStatus(StrEnum):
    PROVISIONED = "PROVISIONED"  # its enrollment is ACTIVE: it may register
    DEPROVISIONED = "DEPROVISIONED"  # its enrollment is UNENROLLED: refused


class EventStatus(StrEnum):
    ACTIVE = "ACTIVE"  # announced (far, near, active or completed by its times)
    CANCELLED = "CANCELLED"


class OptResponse(StrEnum):
    OPT_IN = "OPT_IN"
    OPT_OUT = "OPT_OUT"


class OptedOutBy(StrEnum):
    """Who kept an event from a device before the device answered it."""

    CUSTOMER = "CUSTOMER"  # ``optOut`` before the event started
    PREFERENCES = "PREFERENCES"  # the event would still run at the customer's ``readyBy``


class Ven(SQLModel, table=True):
    """A device's VEN on the program server, one per enrollment: provisioned when the
    enrollment becomes ACTIVE, registered (``ven_id``, ``registration_id``) by the device, its
    client certificate's fingerprint pinned at the first registration over TLS."""

    __tablename__ = "vtn_vens"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    ven_name: str = Field(max_length=100, unique=True)
    enrollment_id: str = Field(foreign_key="enrollments.id", max_length=36, unique=True)
    program_row_id: str = Field(foreign_key="programs.id", max_length=36, index=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    status: str = Field(default=VenStatus.PROVISIONED, max_length=16)
    ven_id: str | None = Field(default=None, max_length=64, unique=True)
    registration_id: str | None = Field(default=None, max_length=64)
    cert_fingerprint: str | None = Field(default=None, max_length=64)
    registered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    provisioned_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    deprovisioned_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class DrEvent(SQLModel, table=True):
    """A demand-response event of a program, sent to every VEN of its ACTIVE enrollments.
    ``modification_number`` grows with each change (a cancellation) so VENs see it anew."""

    __tablename__ = "dr_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "idempotency_key", name="uq_dr_event_idempotency"),
        Index("ix_dr_events_program_start", "program_row_id", "start"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    program_row_id: str = Field(foreign_key="programs.id", max_length=36)
    start: datetime = Field(sa_column=_timestamp())
    duration_minutes: int
    signal_type: str = Field(max_length=32)
    level: float = Field(sa_column=Column(Float, nullable=False))
    target_kw: float | None = Field(default=None, sa_column=Column(Float, nullable=True))
    status: str = Field(default=EventStatus.ACTIVE, max_length=16)
    modification_number: int = 0
    idempotency_key: str = Field(max_length=255)
    request_fingerprint: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    cancelled_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class EventDelivery(SQLModel, table=True):
    """One event for one VEN: which modification it last received, and its answer."""

    __tablename__ = "dr_event_deliveries"
    __table_args__ = (UniqueConstraint("event_id", "ven_row_id", name="uq_dr_event_delivery"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    event_id: str = Field(foreign_key="dr_events.id", max_length=36, index=True)
    ven_row_id: str = Field(foreign_key="vtn_vens.id", max_length=36, index=True)
    delivered_modification: int = -1
    delivered_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    response: str | None = Field(default=None, max_length=16)
    responded_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    opted_out_by: str | None = Field(default=None, max_length=16)
    """Set when the event is withheld from the VEN (``OptedOutBy``): it is not sent, or, sent
    already, sent again as cancelled for it; ``response`` is then ``OPT_OUT``."""
    revision: int = 0
    """This VEN's changes of the event (an opt-out, new preferences): the VEN gets modification
    ``event.modification_number + revision``, so each change reaches it as a modification."""


class ReportStream(SQLModel, table=True):
    """A report a VEN offered and the program server asked for: the VEN's updates name it by
    (``report_request_id``, ``r_id``). Stored so a restart of the program server keeps
    accepting the streams VENs already send."""

    __tablename__ = "vtn_report_streams"
    __table_args__ = (UniqueConstraint("report_request_id", "r_id", name="uq_vtn_report_stream"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    ven_row_id: str = Field(foreign_key="vtn_vens.id", max_length=36, index=True)
    report_request_id: str = Field(max_length=64)
    r_id: str = Field(max_length=64)
    resource_id: str = Field(max_length=100)
    measurement: str = Field(max_length=32)
    unit: str | None = Field(default=None, max_length=32)
    scale: str | None = Field(default=None, max_length=8)
    reading_type: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class DeviceReading(SQLModel, table=True):
    """One telemetry sample, in the unit and scale the VEN declared: ``power_real`` is positive
    when the site draws from the grid, negative when it exports; ``state_of_charge`` is a
    percentage. Kept ``OVPP_DEVICE_READINGS_RETENTION_DAYS``."""

    __tablename__ = "device_readings"
    __table_args__ = (
        UniqueConstraint(
            "enrollment_id", "resource_id", "measurement", "timestamp", name="uq_device_reading"
        ),
        Index("ix_device_readings_timestamp", "timestamp"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    enrollment_id: str = Field(foreign_key="enrollments.id", max_length=36)
    resource_id: str = Field(max_length=100)
    measurement: str = Field(max_length=32)
    timestamp: datetime = Field(sa_column=_timestamp())
    value: float = Field(sa_column=Column(Float, nullable=False))
    unit: str | None = Field(default=None, max_length=32)
    scale: str | None = Field(default=None, max_length=8)
    quality: str | None = Field(default=None, max_length=64, description="OpenADR readingType")


class EnrollmentPreferences(SQLModel, table=True):
    """The customer's limits for an enrollment's device (SMARTFlex: the customer sets them, the
    program schedules within them): during an event the battery keeps ``reserve_soc_percent``,
    and it is at ``target_soc_percent`` at ``ready_by`` (a time of day, UTC, ``HH:MM``)."""

    __tablename__ = "enrollment_preferences"

    enrollment_id: str = Field(foreign_key="enrollments.id", max_length=36, primary_key=True)
    reserve_soc_percent: int = 20
    ready_by: str | None = Field(default=None, max_length=5)
    target_soc_percent: int | None = None
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
