"""Tables of the chain indexer: the token transfers that touch a custodial wallet, the recent
block hashes a reorganisation is found with, and the cursor (with its lease) per chain.
Amounts are base-unit integers (``TokenAmount``: NUMERIC(78,0))."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Index, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from core.db import TokenAmount, UTCDateTime, utc_now


class TransferStatus(StrEnum):
    PENDING = "PENDING"
    """In a block fewer than ``OVPP_RELAYER_CONFIRMATIONS`` deep: a reorganisation may drop it."""
    CONFIRMED = "CONFIRMED"


class TokenTransfer(SQLModel, table=True):
    """One ERC-20 ``Transfer`` log of a served token (OVPP, the stablecoin) whose sender or
    recipient is a custodial wallet (or the fee treasury). Written only by the indexer, in the
    transaction that advances its cursor past the log's block; deleted when a reorganisation
    drops the block. A log is one row whatever its wallets: a transfer between two wallets here
    is found from both sides (``from_address``, ``to_address``)."""

    __tablename__ = "token_transfers"
    __table_args__ = (
        UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_token_transfers_log"),
        # A wallet's activity, newest first, from either side: keyset pages (activity/feed.py).
        Index("ix_token_transfers_to_time", "to_address", "block_timestamp", "id"),
        Index("ix_token_transfers_from_time", "from_address", "block_timestamp", "id"),
        # What a rollback deletes and what a new head confirms.
        Index("ix_token_transfers_chain_block", "chain_id", "block_number"),
        Index("ix_token_transfers_status_block", "status", "block_number"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    )
    chain_id: int = Field(sa_column=Column(BigInteger, nullable=False))
    token_address: str = Field(max_length=42)
    tx_hash: str = Field(max_length=66)
    log_index: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_number: int = Field(sa_column=Column(BigInteger, nullable=False))
    block_hash: str = Field(max_length=66)
    block_timestamp: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    from_address: str = Field(max_length=42)
    to_address: str = Field(max_length=42)
    value: int = Field(sa_column=Column(TokenAmount, nullable=False))
    status: str = Field(default=TransferStatus.PENDING, max_length=16)
    indexed_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )


class IndexedBlock(SQLModel, table=True):
    """The hash of a recently indexed block (the last ``OVPP_INDEXER_REORG_WINDOW`` below the
    head, and always the cursor's): when the node's chain stops matching them, the highest one
    that still matches is the fork point."""

    __tablename__ = "indexed_blocks"

    chain_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    number: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: str = Field(max_length=66)
    parent_hash: str = Field(max_length=66)


class IndexerCursor(SQLModel, table=True):
    """Where the indexer of a chain is: every block up to ``last_block`` (whose hash is
    ``last_block_hash``) is indexed. Moved only together with the rows of the blocks it passes,
    and only by the holder of the lease (``lease_owner`` until ``lease_until``), by a
    compare-and-set on ``last_block``: two indexers never both write a range."""

    __tablename__ = "indexer_cursors"

    chain_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    last_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_block_hash: str | None = Field(default=None, max_length=66)
    lease_owner: str | None = Field(default=None, max_length=100)
    lease_until: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    updated_at: datetime = Field(
        default_factory=utc_now, sa_column=Column(UTCDateTime(), nullable=False)
    )


class WalletBalance(SQLModel, table=True):
    """A watched address's balance of a served token as the index holds it: the sum of its
    indexed transfers in, less those out, as of the cursor's block (every row moves with the
    cursor, in the transaction that writes or rolls back the transfers). One primary-key probe
    per wallet and token, however long its history."""

    __tablename__ = "wallet_balances"

    chain_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    address: str = Field(primary_key=True, max_length=42)
    token_address: str = Field(primary_key=True, max_length=42)
    balance: int = Field(sa_column=Column(TokenAmount, nullable=False))
    last_block: int = Field(sa_column=Column(BigInteger, nullable=False))
    """The block of the last indexed transfer that changed it."""
