"""program server, the customer's side: ``enrollment_preferences`` (the limits a customer sets
for an enrollment's device: the state of charge kept during events, and the one reached by a
time of day) and ``dr_event_deliveries.opted_out_by`` (an event withheld from a device: the
customer opted out, or it fell outside their preferences) and ``.revision`` (that device's own
changes of an event, added to the event's modification number). Downgrade drops both and their data.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-08 10:12:41.118204
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_preferences",
        sa.Column("enrollment_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("reserve_soc_percent", sa.Integer(), nullable=False),
        sa.Column("ready_by", sqlmodel.sql.sqltypes.AutoString(length=5), nullable=True),
        sa.Column("target_soc_percent", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollments.id"]),
        sa.PrimaryKeyConstraint("enrollment_id"),
    )
    with op.batch_alter_table("dr_event_deliveries") as batch:
        batch.add_column(
            sa.Column("opted_out_by", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("dr_event_deliveries") as batch:
        batch.drop_column("revision")
        batch.drop_column("opted_out_by")
    op.drop_table("enrollment_preferences")
