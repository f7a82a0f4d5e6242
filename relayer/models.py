"""Tables of the relayer: relayer keys, the transaction pipeline, fee quotes, sponsorship and
wallet policies. Amounts are base-unit integers (``TokenAmount``: NUMERIC(78,0))."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    LargeBinary,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

from core.db import TokenAmount, UTCDateTime, new_id, utc_now


def _timestamp(nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(UTCDateTime(), nullable=nullable)


class RelayStatus(StrEnum):
    QUEUED = "QUEUED"
    SIGNED = "SIGNED"
    SUBMITTED = "SUBMITTED"
    MINED = "MINED"
    CONFIRMED = "CONFIRMED"
    FAILED = "FAILED"
    REPLACED = "REPLACED"


# The statuses of a job still moving through the worker's stages.
PIPELINE_STATUSES = (
    RelayStatus.QUEUED,
    RelayStatus.SIGNED,
    RelayStatus.SUBMITTED,
    RelayStatus.MINED,
)


class JobKind(StrEnum):
    """What a relayed job does; the worker treats them alike, the history shows them apart."""

    TRANSFER = "TRANSFER"
    ENROLL = "ENROLL"
    UNENROLL = "UNENROLL"
    ONRAMP_DELIVERY = "ONRAMP_DELIVERY"
    NONCE_FILL = "NONCE_FILL"  # a zero-value transaction taking a refused job's relayer nonce
    SPONSOR_FUNDING = "SPONSOR_FUNDING"  # a utility's tokens to the fee treasury, for gas funds
    REGISTRY = "REGISTRY"  # a utility's registry change: its registration, territory, programs
    REWARD_SETTLEMENT = "REWARD_SETTLEMENT"  # a utility's event rewards: publish, claims


OPEN_STATUSES = (RelayStatus.QUEUED, RelayStatus.SIGNED, RelayStatus.SUBMITTED)
FINAL_STATUSES = (RelayStatus.CONFIRMED, RelayStatus.FAILED, RelayStatus.REPLACED)


class RelayerKey(SQLModel, table=True):
    """A key that broadcasts and pays native gas. ``next_nonce`` is the next nonce to assign;
    the chain's pending nonce is a floor it is reconciled against."""

    __tablename__ = "relayer_keys"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    slot: int = Field(unique=True)
    address: str = Field(unique=True, max_length=42)
    encrypted_private_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    wrapped_data_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    kek_id: str = Field(max_length=64)
    next_nonce: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    enabled: bool = True
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class RelayTransaction(SQLModel, table=True):
    """One customer action relayed on chain: the persisted state machine
    QUEUED → SIGNED → SUBMITTED → MINED → CONFIRMED | FAILED | REPLACED.

    The customer's forward requests are signed when the job is created (``forward_requests``);
    the relayer's raw transaction is stored (``raw_transaction``) before it is broadcast."""

    __tablename__ = "relay_transactions"
    __table_args__ = (
        UniqueConstraint("wallet_id", "idempotency_key", name="uq_relay_tx_wallet_idempotency"),
        # Not unique: a resynchronised wallet re-signs queued jobs at nonces a failed job held.
        Index("ix_relay_tx_wallet_fwd_nonce", "wallet_id", "forwarder_nonce"),
        UniqueConstraint("relayer_key_id", "relayer_nonce", name="uq_relay_tx_key_nonce"),
        Index("ix_relay_tx_key_status", "relayer_key_id", "status"),
        Index("ix_relay_tx_wallet_created", "wallet_id", "created_at"),
        # A wallet's open jobs (its pending debits), whatever their age, and its failed ones
        # of the last day (taken off its running totals for the daily limit).
        Index("ix_relay_tx_wallet_status_token", "wallet_id", "status", "token", "created_at"),
        # A wallet's running total of a token as of a moment (the daily limit's window).
        Index("ix_relay_tx_wallet_token_created", "wallet_id", "token", "created_at"),
        # Whether a fee quote was used already.
        Index("ix_relay_tx_quote", "quote_id"),
        # The last hour's failures, counted by /metrics at every scrape.
        Index("ix_relay_tx_status_updated", "status", "updated_at"),
        # A wallet's jobs, and the jobs to an address, not in the chain index yet: not mined, or
        # mined above the index's block (activity/repository.py, jobs_in_flight).
        Index("ix_relay_tx_wallet_block", "wallet_id", "block_number"),
        Index("ix_relay_tx_to_block", "to_address", "block_number"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    wallet_id: str = Field(foreign_key="wallets.id", max_length=36)
    customer_id: str = Field(foreign_key="customers.id", max_length=36)
    idempotency_key: str = Field(max_length=255)
    request_fingerprint: str = Field(max_length=64)
    kind: str = Field(default=JobKind.TRANSFER.value, max_length=32)
    status: str = Field(default=RelayStatus.QUEUED, max_length=16, index=True)

    token: str = Field(max_length=16)
    token_address: str = Field(max_length=42)
    to_address: str = Field(max_length=42)
    amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    fee_token: str | None = Field(default=None, max_length=16)
    fee_amount: int = Field(default=0, sa_column=Column(TokenAmount, nullable=False, default=0))
    sponsored: bool = False
    # No foreign key to the sponsor: checking one share-locked the sponsor's row for the rest
    # of the transaction, which then waited for that row outside its queue (migration 0014).
    sponsor_id: str | None = Field(default=None, max_length=36)
    quote_id: str | None = Field(default=None, max_length=36)
    # The wallet's running total of ``token`` over its jobs, this one included (failed ones
    # too): what it sent in a window is the difference of two totals (docs/relayer.md,
    # "Daily limits"). Kept by ``relayer.jobs`` under the wallet's lock.
    running_total: int = Field(
        default=0, sa_column=Column(TokenAmount, nullable=False, server_default="0")
    )

    forwarder_nonce: int = Field(sa_column=Column(BigInteger, nullable=False))
    forward_requests: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    gas_limit: int = Field(sa_column=Column(BigInteger, nullable=False))

    relayer_key_id: str = Field(foreign_key="relayer_keys.id", max_length=36)
    relayer_nonce: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    raw_transaction: bytes | None = Field(
        default=None, sa_column=Column(LargeBinary, nullable=True)
    )
    tx_hash: str | None = Field(default=None, max_length=66, index=True)
    max_fee_per_gas: int | None = Field(default=None, sa_column=Column(TokenAmount, nullable=True))
    max_priority_fee_per_gas: int | None = Field(
        default=None, sa_column=Column(TokenAmount, nullable=True)
    )
    attempts: int = 0
    block_number: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    gas_used: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    effective_gas_price: int | None = Field(
        default=None, sa_column=Column(TokenAmount, nullable=True)
    )
    error: str | None = Field(default=None, max_length=500)

    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    updated_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    submitted_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    confirmed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class RelayAttempt(SQLModel, table=True):
    """Every raw transaction ever signed for a job: after "nonce too low" the receipts of those
    at the job's current relayer nonce are looked up, so a landed transaction is never lost.

    A job that reverted without executing goes back to the queue and is signed again at a new
    relayer nonce; its earlier attempts stay as the record of what was sent, and
    ``relayer_nonce`` keeps their receipts from being taken for the new transaction's
    (``NULL``: a row from before the column, looked up as before)."""

    __tablename__ = "relay_attempts"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    relay_transaction_id: str = Field(
        foreign_key="relay_transactions.id", max_length=36, index=True
    )
    relayer_nonce: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    tx_hash: str = Field(max_length=66, unique=True)
    raw_transaction: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    max_fee_per_gas: int = Field(sa_column=Column(TokenAmount, nullable=False))
    max_priority_fee_per_gas: int = Field(sa_column=Column(TokenAmount, nullable=False))
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class FeeQuote(SQLModel, table=True):
    __tablename__ = "fee_quotes"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    wallet_id: str = Field(foreign_key="wallets.id", max_length=36, index=True)
    token: str = Field(max_length=16)
    to_address: str = Field(max_length=42)
    amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    fee_token: str = Field(max_length=16)
    fee_amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    gas_limit: int = Field(sa_column=Column(BigInteger, nullable=False))
    max_fee_per_gas: int = Field(sa_column=Column(TokenAmount, nullable=False))
    sponsored: bool = False
    sponsor_id: str | None = Field(default=None, max_length=36)
    expires_at: datetime = Field(sa_column=_timestamp())
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class Sponsor(SQLModel, table=True):
    """A utility's gas sponsorship: its own funds (native-gas wei it has paid in) and caps."""

    __tablename__ = "sponsors"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    tenant_id: str = Field(foreign_key="tenants.id", max_length=36, unique=True)
    name: str = Field(max_length=200)
    active: bool = True
    sponsors_transfers: bool = True
    funds_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))
    per_transaction_cap_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))
    per_customer_daily_cap_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))
    period_cap_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))
    period_seconds: int = Field(default=30 * 24 * 3600)
    period_started_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    # Running totals, kept under the sponsor's row lock, so a budget check is O(1) however long
    # the sponsor's history (reservations at their worst case, settled to the real cost).
    spent_wei: int = Field(
        default=0, sa_column=Column(TokenAmount, nullable=False, server_default="0")
    )
    period_spent_wei: int = Field(
        default=0, sa_column=Column(TokenAmount, nullable=False, server_default="0")
    )
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class SponsorCharge(SQLModel, table=True):
    """What a sponsored transaction cost its sponsor: reserved at the quote's worst case when
    the job is created, settled to gasUsed × effectiveGasPrice when it is mined."""

    __tablename__ = "sponsor_charges"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    # No foreign key to the sponsor, as on the job (migration 0014): the reservation locks it.
    sponsor_id: str = Field(max_length=36, index=True)
    customer_id: str = Field(foreign_key="customers.id", max_length=36, index=True)
    relay_transaction_id: str = Field(
        foreign_key="relay_transactions.id", max_length=36, unique=True
    )
    amount_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))
    settled: bool = False
    # PostgreSQL: reserved by the transaction's commit (the deferred trigger of migration 0014),
    # which refuses, rolling the transaction back, when the budget does not cover it.
    reserve_on_commit: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())


class WalletPolicy(SQLModel, table=True):
    """Programmable limits enforced before anything is signed."""

    __tablename__ = "wallet_policies"
    __table_args__ = (UniqueConstraint("wallet_id", "token", name="uq_wallet_policy_token"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    wallet_id: str = Field(foreign_key="wallets.id", max_length=36)
    token: str = Field(max_length=16)
    daily_limit: int | None = Field(default=None, sa_column=Column(TokenAmount, nullable=True))
    allowed_destinations: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class FundingSource(StrEnum):
    """Where a sponsor's funds came from."""

    ON_CHAIN = "ON_CHAIN"  # the utility's tokens moved to the fee treasury by a relayed job
    OPERATOR = "OPERATOR"  # credited by the operator (``ovpp-wallet sponsor credit``)
    LEGACY = "LEGACY"  # an administrator's unpaid credit, from before migration 0016


class FundingStatus(StrEnum):
    PENDING = "PENDING"  # its job is not confirmed yet: nothing credited
    CREDITED = "CREDITED"  # added to the sponsor's funds, once


class SponsorFunding(SQLModel, table=True):
    """A top-up of a sponsor's funds (``amount_wei``, native-token wei), idempotent per key.
    An ``ON_CHAIN`` one is ``PENDING`` until its job (``relay_transaction_id``, moving
    ``token_amount`` of ``token`` to the fee treasury) is confirmed, then credited once; an
    ``OPERATOR`` one is credited at once and names who (``operator``) and the payment
    (``reference``)."""

    __tablename__ = "sponsor_fundings"
    __table_args__ = (
        UniqueConstraint("sponsor_id", "idempotency_key", name="uq_sponsor_funding_key"),
        UniqueConstraint("relay_transaction_id", name="uq_sponsor_funding_job"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    sponsor_id: str = Field(foreign_key="sponsors.id", max_length=36, index=True)
    idempotency_key: str = Field(max_length=255)
    amount_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))
    source: str = Field(max_length=16)
    status: str = Field(max_length=16)
    token: str | None = Field(default=None, max_length=16)
    token_amount: int | None = Field(default=None, sa_column=Column(TokenAmount, nullable=True))
    relay_transaction_id: str | None = Field(
        default=None, foreign_key="relay_transactions.id", max_length=36
    )
    operator: str | None = Field(default=None, max_length=200)
    reference: str | None = Field(default=None, max_length=255)
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
    credited_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class SponsorCustomerDay(SQLModel, table=True):
    """What a sponsor spent on one customer in one UTC day (the per-customer daily cap)."""

    __tablename__ = "sponsor_customer_days"

    sponsor_id: str = Field(foreign_key="sponsors.id", primary_key=True, max_length=36)
    customer_id: str = Field(foreign_key="customers.id", primary_key=True, max_length=36)
    day: str = Field(primary_key=True, max_length=10)
    spent_wei: int = Field(sa_column=Column(TokenAmount, nullable=False))


class MovedHold(SQLModel, table=True):
    """A hold that followed held tokens (bought by card, review H6) from one of this backend's
    wallets to another (``relayer.hold``): ``amount`` of ``token`` is held in ``to_wallet_id``
    until ``until``, and as much less in ``from_wallet_id``. Written in the transaction that
    queues the transfer (``relay_transaction_id``); not counted once that job has FAILED (its
    tokens never moved)."""

    __tablename__ = "moved_holds"
    __table_args__ = (
        Index("ix_moved_holds_to_wallet_until", "to_wallet_id", "until"),
        Index("ix_moved_holds_from_wallet_until", "from_wallet_id", "until"),
    )

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    relay_transaction_id: str = Field(foreign_key="relay_transactions.id", max_length=36)
    from_wallet_id: str = Field(foreign_key="wallets.id", max_length=36)
    to_wallet_id: str = Field(foreign_key="wallets.id", max_length=36)
    token: str = Field(max_length=16)
    amount: int = Field(sa_column=Column(TokenAmount, nullable=False))
    until: datetime = Field(sa_column=_timestamp())
    created_at: datetime = Field(default_factory=utc_now, sa_column=_timestamp())
