"""the chain indexer: token transfers that touch a custodial wallet, recent block hashes, and
the cursor with its lease

``token_transfers``: one row per ERC-20 ``Transfer`` log of a served token whose sender or
recipient is a custodial wallet (or the fee treasury), unique per (chain, transaction, log
index); ``PENDING`` until ``OVPP_RELAYER_CONFIRMATIONS`` deep, then ``CONFIRMED``.
``indexed_blocks``: the hashes of recently indexed blocks, to find a reorganisation's fork point.
``indexer_cursors``: per chain, the last indexed block and its hash, and the lease that lets one
indexer at a time write. New tables only: the indexer fills them from its start block.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _string(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "token_transfers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("token_address", _string(42), nullable=False),
        sa.Column("tx_hash", _string(66), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _string(66), nullable=False),
        sa.Column("block_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_address", _string(42), nullable=False),
        sa.Column("to_address", _string(42), nullable=False),
        sa.Column("value", core.db.TokenAmount(), nullable=False),
        sa.Column("status", _string(16), nullable=False),
        sa.Column("indexed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("chain_id", "tx_hash", "log_index", name="uq_token_transfers_log"),
    )
    with op.batch_alter_table("token_transfers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_token_transfers_to_block", ["to_address", "block_number", "log_index"]
        )
        batch_op.create_index(
            "ix_token_transfers_from_block", ["from_address", "block_number", "log_index"]
        )
        batch_op.create_index("ix_token_transfers_chain_block", ["chain_id", "block_number"])
        batch_op.create_index("ix_token_transfers_status_block", ["status", "block_number"])
    op.create_table(
        "indexed_blocks",
        sa.Column("chain_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", _string(66), nullable=False),
        sa.Column("parent_hash", _string(66), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number"),
    )
    op.create_table(
        "indexer_cursors",
        sa.Column("chain_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.Column("last_block_hash", _string(66), nullable=True),
        sa.Column("lease_owner", _string(100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chain_id"),
    )


def downgrade() -> None:
    op.drop_table("indexer_cursors")
    op.drop_table("indexed_blocks")
    with op.batch_alter_table("token_transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_token_transfers_status_block")
        batch_op.drop_index("ix_token_transfers_chain_block")
        batch_op.drop_index("ix_token_transfers_from_block")
        batch_op.drop_index("ix_token_transfers_to_block")
    op.drop_table("token_transfers")
