"""holds follow card-bought tokens to the backend's other wallets

Issue 16 (review H6): tokens bought by card are held from outside addresses, but a customer
could move them to a second custodial wallet of their own and send them out from there. A
transfer to another wallet of this backend that spends held tokens now records a
``moved_holds`` row in the transaction that queues it: the recipient wallet holds that part
until the same end, the sender's hold is that much less (``relayer.hold``). Existing rows:
none; transfers made before this revision moved no hold.

Downgrade drops the table: the holds moved so far are forgotten (the recipients' tokens may
then leave before the hold's end, and the senders' holds count in full again).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "moved_holds",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column(
            "relay_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False
        ),
        sa.Column("from_wallet_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("to_wallet_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("amount", core.db.TokenAmount(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["relay_transaction_id"], ["relay_transactions.id"]),
        sa.ForeignKeyConstraint(["from_wallet_id"], ["wallets.id"]),
        sa.ForeignKeyConstraint(["to_wallet_id"], ["wallets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("moved_holds", schema=None) as batch_op:
        batch_op.create_index(
            "ix_moved_holds_to_wallet_until", ["to_wallet_id", "until"], unique=False
        )
        batch_op.create_index(
            "ix_moved_holds_from_wallet_until", ["from_wallet_id", "until"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("moved_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_moved_holds_from_wallet_until")
        batch_op.drop_index("ix_moved_holds_to_wallet_until")
    op.drop_table("moved_holds")
