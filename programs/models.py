"""Tables of programs and enrollment: the catalog mirrored from the on-chain registry plus what
the app shows, the customers' devices, and their enrollments' persisted state machine."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from core.db import TokenAmount, UTCDateTime, new_id, utc_now


def _timestamp(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class FeePayer(StrEnum):
    CUSTOMER = "CUSTOMER"
    SPONSOR = "SPONSOR"
    CARD = "CARD"


class EnrollmentStatus(StrEnum):
    REQUESTED = "REQUESTED"
    ROUTED = "ROUTED"
    FEE_PENDING = "FEE_PENDING"
    CONNECTING = "CONNECTING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    UNENROLLING = "UNENROLLING"
    UNENROLLED = "UNENROLLED"


class UtilityAccount(SQLModel, table=True):
    """A utility's identity in the registry: its ``utility_id`` and the custodial wallet that is
    its registry admin and pays the connection fees of the programs it sponsors."""

    __tablename__ = "utility_accounts"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", unique=True, max_length=36)
    utility_id: str = Field(unique=True, max_length=66)
    wallet_id: str = Field(foreign_key="wallets.id", unique=True, max_length=36)
    country: str = Field(max_length=2)
    region: str = Field(max_length=10)
    postal_codes: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class Program(SQLModel, table=True):
    __tablename__ = "programs"
    __table_args__ = (UniqueConstraint("tenant_id", "external_id", name="uq_program_external"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36, index=True)
    program_id: str = Field(unique=True, max_length=66, description="bytes32 id in the registry")
    external_id: str = Field(max_length=100)
    name: str = Field(max_length=200)
    long_name: str | None = Field(default=None, max_length=500)
    program_type: str = Field(default="DEMAND_RESPONSE", max_length=50)
    description: str = Field(default="", max_length=4000)
    fee_payer: str = Field(default=FeePayer.CUSTOMER, max_length=16)
    connection_fee: int = Field(sa_column=Column(TokenAmount, nullable=False))
    enrollment_bonus: int = Field(
        default=0, sa_column=Column(TokenAmount, nullable=False, default=0)
    )
    per_event_reward: int = Field(
        default=0, sa_column=Column(TokenAmount, nullable=False, default=0)
    )
    protocols: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    eligible_device_types: list = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    min_charge_w: int = 0
    min_discharge_w: int = 0
    min_energy_wh: int = 0
    active: bool = True
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class Device(SQLModel, table=True):
    """A customer's device at a site. ``device_id`` is keccak(make, model, serial): the serial
    itself never goes on chain."""

    __tablename__ = "devices"
    __table_args__ = (UniqueConstraint("customer_id", "device_id", name="uq_device_customer"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(foreign_key="customers.id", max_length=36, index=True)
    device_id: str = Field(max_length=66, index=True)
    model_id: str = Field(max_length=66)
    make: str = Field(max_length=100)
    model: str = Field(max_length=100)
    serial: str = Field(max_length=100)
    device_type: str = Field(max_length=32)
    site_line1: str = Field(max_length=200)
    site_city: str = Field(max_length=100)
    site_region: str = Field(max_length=10)
    site_postal_code: str = Field(max_length=20)
    site_country: str = Field(max_length=2)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


ERROR_LENGTH = 500
"""Characters an enrollment's ``error`` holds."""


class Enrollment(SQLModel, table=True):
    """REQUESTED → ROUTED → FEE_PENDING → CONNECTING → ACTIVE | FAILED, then UNENROLLED. A
    card-paid FEE_PENDING one whose fee is never paid ends UNENROLLED (unenrolled) or FAILED
    (its payment window passed): ``programs.card_cancel``."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="uq_enrollment_idempotency"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    customer_id: str = Field(foreign_key="customers.id", max_length=36, index=True)
    device_row_id: str = Field(foreign_key="devices.id", max_length=36, index=True)
    program_row_id: str = Field(foreign_key="programs.id", max_length=36, index=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36, index=True)
    protocol: str = Field(max_length=32)
    payment_method: str = Field(max_length=16)
    status: str = Field(default=EnrollmentStatus.REQUESTED, max_length=16, index=True)
    idempotency_key: str = Field(max_length=255)
    request_fingerprint: str = Field(max_length=64)
    fee_amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    relay_transaction_id: str | None = Field(default=None, max_length=36)
    unenroll_relay_transaction_id: str | None = Field(default=None, max_length=36)
    unenroll_idempotency_key: str | None = Field(default=None, max_length=255)
    connection_id: str | None = Field(default=None, max_length=66)
    routing: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    connection_parameters: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    error: str | None = Field(default=None, max_length=ERROR_LENGTH)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class RegistryChangeStatus(StrEnum):
    """REGISTERING (the registrar's ``registerUtility`` job) → SENDING (the utility wallet's
    job) → CONFIRMED (the catalog written from what landed) | FAILED."""

    REGISTERING = "REGISTERING"
    SENDING = "SENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


OPEN_REGISTRY_CHANGES = (RegistryChangeStatus.REGISTERING, RegistryChangeStatus.SENDING)


class RegistryChangeTarget(StrEnum):
    UTILITY = "UTILITY"
    PROGRAM = "PROGRAM"


class RegistryChange(SQLModel, table=True):
    """An administrator's change of its utility's registry record or of one of its programs,
    sent as relayed jobs; the catalog follows once it lands. One open change per utility (a
    partial unique index): changes land in the order they were asked."""

    __tablename__ = "registry_changes"
    __table_args__ = (
        Index(
            "uq_registry_change_open",
            "tenant_id",
            unique=True,
            sqlite_where=text("status IN ('REGISTERING', 'SENDING')"),
            postgresql_where=text("status IN ('REGISTERING', 'SENDING')"),
        ),
        Index("ix_registry_changes_tenant_created", "tenant_id", "created_at"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    target: str = Field(max_length=16)
    external_id: str | None = Field(default=None, max_length=100)  # a program's
    spec: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=16, index=True)
    relay_transaction_id: str | None = Field(
        default=None, foreign_key="relay_transactions.id", max_length=36
    )
    error: str | None = Field(default=None, max_length=ERROR_LENGTH)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
