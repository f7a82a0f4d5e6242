"""indexed balances and the activity feed's indexes

``wallet_balances``: per (chain, watched address, token) the balance the index holds, kept by
the indexer in the transaction that writes or rolls back transfers. ``token_transfers`` is
read newest first per address by block time (the activity feed's keyset pages), and
``relay_transactions`` by wallet and by recipient, then block (the jobs not indexed yet). The index
is read again from ``OVPP_INDEXER_START_BLOCK``: its rows and cursor are dropped here, so that
every balance is the sum of rows the indexer wrote alongside it.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-12 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_balances",
        sa.Column("chain_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("token_address", sqlmodel.sql.sqltypes.AutoString(length=42), nullable=False),
        sa.Column("balance", core.db.TokenAmount(), nullable=False),
        sa.Column("last_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address", "token_address"),
    )
    op.execute("DELETE FROM token_transfers")
    op.execute("DELETE FROM indexed_blocks")
    op.execute("DELETE FROM indexer_cursors")
    with op.batch_alter_table("token_transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_token_transfers_to_block")
        batch_op.drop_index("ix_token_transfers_from_block")
        batch_op.create_index("ix_token_transfers_to_time", ["to_address", "block_timestamp", "id"])
        batch_op.create_index(
            "ix_token_transfers_from_time", ["from_address", "block_timestamp", "id"]
        )
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_relay_tx_wallet_block", ["wallet_id", "block_number"])
        batch_op.create_index("ix_relay_tx_to_block", ["to_address", "block_number"])


def downgrade() -> None:
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_tx_to_block")
        batch_op.drop_index("ix_relay_tx_wallet_block")
    with op.batch_alter_table("token_transfers", schema=None) as batch_op:
        batch_op.drop_index("ix_token_transfers_from_time")
        batch_op.drop_index("ix_token_transfers_to_time")
        batch_op.create_index(
            "ix_token_transfers_to_block", ["to_address", "block_number", "log_index"]
        )
        batch_op.create_index(
            "ix_token_transfers_from_block", ["from_address", "block_number", "log_index"]
        )
    op.drop_table("wallet_balances")
