"""onramp payments record an operator's resolution of the case they needed an operator for

A card payment flagged for clawback (money went back after its tokens were delivered) or whose
refund failed (REFUND_FAILED: nothing delivered, the money is in the platform's Stripe balance)
waits for an operator. ``ovpp-wallet onramp resolve`` records who settled it, when, and how
(``operator_resolved_by``, ``operator_resolved_at``, ``operator_note``) beside the facts, which
stay as they are. Existing payments start unresolved.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("operator_resolved_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "operator_resolved_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("operator_note", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.drop_column("operator_note")
        batch_op.drop_column("operator_resolved_by")
        batch_op.drop_column("operator_resolved_at")
