"""index a wallet's jobs by status (its open debits, read by every transfer)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 23:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_relay_tx_wallet_status", ["wallet_id", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_tx_wallet_status")
