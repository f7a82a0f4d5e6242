"""relay attempts record their relayer nonce

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 00:57:01.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("relay_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("relayer_nonce", sa.BigInteger(), nullable=True))
    _backfill_open_jobs()


def _backfill_open_jobs() -> None:
    """Attempts of jobs still in the pipeline take their job's relayer nonce: until now a job
    kept one relayer nonce for all its attempts (only a failed job lost it), so this is exact.
    Final jobs' attempts are never looked up again and keep ``NULL``."""
    op.execute(
        sa.text(
            "UPDATE relay_attempts SET relayer_nonce = ("
            " SELECT relay_transactions.relayer_nonce FROM relay_transactions"
            " WHERE relay_transactions.id = relay_attempts.relay_transaction_id"
            ") WHERE relay_transaction_id IN ("
            " SELECT id FROM relay_transactions"
            " WHERE status IN ('QUEUED', 'SIGNED', 'SUBMITTED', 'MINED'))"
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("relay_attempts", schema=None) as batch_op:
        batch_op.drop_column("relayer_nonce")
