"""onramp payments record refunds Stripe accepted that failed afterwards

A card refund can fail days after Stripe accepted it (the card was closed, lost or stolen): its
money goes back to the platform's balance. ``refund_failed_amount`` keeps the sum of such
refunds, so ``refunded_amount`` says what really went back. Existing payments start at 0.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("refund_failed_amount", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.drop_column("refund_failed_amount")
