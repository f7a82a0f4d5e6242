"""Tables of rewards: each program's reward rule, each event's settlement (a persisted state
machine), one contribution record per enrollment the event was sent to (with its leaf), and
the claim batches that pay them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Column, Float, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import TokenAmount, UTCDateTime, new_id, utc_now


def _timestamp(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class BaselineMethod(StrEnum):
    METER_BEFORE_AFTER = "METER_BEFORE_AFTER"
    HIGH_X_OF_Y = "HIGH_X_OF_Y"


class SettlementStatus(StrEnum):
    """COMPUTED (records and root written) → PUBLISHING (the sponsor's publish-and-fund job)
    → CLAIMING (claim batches) → SETTLED; UNFUNDED while the sponsor's wallet lacks the total
    (nothing published, nothing paid); FAILED when the publish failed for another reason."""

    COMPUTED = "COMPUTED"
    UNFUNDED = "UNFUNDED"
    PUBLISHING = "PUBLISHING"
    CLAIMING = "CLAIMING"
    SETTLED = "SETTLED"
    FAILED = "FAILED"


OPEN_SETTLEMENTS = (
    SettlementStatus.COMPUTED,
    SettlementStatus.UNFUNDED,
    SettlementStatus.PUBLISHING,
    SettlementStatus.CLAIMING,
)


class ClaimStatus(StrEnum):
    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"


class Response(StrEnum):
    OPT_IN = "OPT_IN"
    OPT_OUT = "OPT_OUT"
    NONE = "NONE"


class RewardRule(SQLModel, table=True):
    """A program's reward rule; a program without a row uses the configured defaults."""

    __tablename__ = "program_reward_rules"

    program_row_id: str = Field(foreign_key="programs.id", primary_key=True, max_length=36)
    baseline_method: str = Field(default=BaselineMethod.METER_BEFORE_AFTER, max_length=32)
    baseline_window_minutes: int = 60
    high_x: int = 4
    high_y: int = 5
    performance_floor_bps: int = 2_000
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class RewardSettlement(SQLModel, table=True):
    """One per event: exactly once by its unique ``event_id``."""

    __tablename__ = "reward_settlements"
    __table_args__ = (Index("ix_reward_settlements_program", "program_row_id", "created_at"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    event_id: str = Field(foreign_key="dr_events.id", max_length=36, unique=True)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36)
    program_row_id: str = Field(foreign_key="programs.id", max_length=36)
    status: str = Field(default=SettlementStatus.COMPUTED, max_length=16, index=True)
    baseline_method: str = Field(max_length=32)
    sponsor_address: str = Field(max_length=42)
    event_ref: str = Field(max_length=66)
    chain_event_id: str = Field(max_length=66)
    root: str = Field(max_length=66)
    leaf_count: int
    recipients: int  # leaves that pay something
    total_reward: int = Field(sa_column=Column(TokenAmount, nullable=False))
    publish_attempts: int = 0
    publish_relay_transaction_id: str | None = Field(default=None, max_length=36)
    publish_tx_hash: str | None = Field(default=None, max_length=66)
    error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    settled_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class ContributionRecord(SQLModel, table=True):
    """What one enrollment did in one event, by the program's rule, and its reward leaf."""

    __tablename__ = "contribution_records"
    __table_args__ = (
        UniqueConstraint("event_id", "enrollment_id", name="uq_contribution_event_enrollment"),
        UniqueConstraint("settlement_id", "leaf_index", name="uq_contribution_leaf"),
        Index("ix_contribution_records_customer", "customer_id", "created_at"),
        Index("ix_contribution_records_batch", "claim_batch_id"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    settlement_id: str = Field(foreign_key="reward_settlements.id", max_length=36)
    event_id: str = Field(foreign_key="dr_events.id", max_length=36)
    enrollment_id: str = Field(foreign_key="enrollments.id", max_length=36)
    customer_id: str = Field(foreign_key="customers.id", max_length=36)
    device_row_id: str = Field(foreign_key="devices.id", max_length=36)
    device_id: str = Field(max_length=66)
    recipient: str = Field(max_length=42)
    response: str = Field(max_length=16)
    baseline_method: str = Field(max_length=32)
    baseline_kw: float = Field(sa_column=Column(Float, nullable=False))
    asked_kw: float = Field(sa_column=Column(Float, nullable=False))
    average_kw: float = Field(sa_column=Column(Float, nullable=False))
    delivered_wh: int
    performance_bps: int
    expected_readings: int
    received_readings: int
    quality_bps: int
    gaps: int
    longest_gap_seconds: int
    online_seconds: int
    flags: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    event_reward: int = Field(sa_column=Column(TokenAmount, nullable=False))
    enrollment_bonus: int = Field(sa_column=Column(TokenAmount, nullable=False))
    bonus_enrollment_id: str | None = Field(default=None, max_length=36, unique=True)
    amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    leaf_index: int
    claim_status: str = Field(default=ClaimStatus.PENDING, max_length=16)
    claim_batch_id: str | None = Field(default=None, max_length=36)
    claim_tx_hash: str | None = Field(default=None, max_length=66)
    claim_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class ClaimBatch(SQLModel, table=True):
    """One ``claimMany`` job of a settlement; its records point at it."""

    __tablename__ = "reward_claim_batches"
    __table_args__ = (UniqueConstraint("settlement_id", "number", name="uq_claim_batch_number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    settlement_id: str = Field(foreign_key="reward_settlements.id", max_length=36, index=True)
    number: int
    relay_transaction_id: str = Field(max_length=36)
    status: str = Field(default=ClaimStatus.PENDING, max_length=16)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
