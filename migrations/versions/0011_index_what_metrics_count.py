"""index what /metrics counts at every scrape: failures by time, payments awaiting a clawback

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 04:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_relay_tx_status_updated", ["status", "updated_at"], unique=False)
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.create_index("ix_onramp_payments_clawback", ["clawback_required"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.drop_index("ix_onramp_payments_clawback")
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_tx_status_updated")
