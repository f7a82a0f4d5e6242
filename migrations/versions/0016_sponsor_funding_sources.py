"""sponsor fundings say where they came from, and an on-chain one waits for its job

Issue 16 (review finding H5): an administrator's ``fundSponsorship`` no longer adds funds for
free. A funding is either ``ON_CHAIN`` (the utility's tokens moved to the fee treasury by a
relayed job, ``relay_transaction_id``; ``PENDING`` until that job is confirmed, then
``CREDITED`` once) or ``OPERATOR`` (``ovpp-wallet sponsor credit``: who, and the payment's
``reference``). Existing rows were an administrator's unpaid credits: they become ``LEGACY``
and ``CREDITED`` (their ``credited_at`` is their ``created_at``), so the history says what
they were and the funds they added stay.

Downgrade: the old table knows only credited fundings, so ``PENDING`` rows are deleted
(their jobs' tokens may still move: credit them by hand after an upgrade, or before the
downgrade let them confirm); the other rows lose their source.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-09 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import core.db

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sponsor_fundings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "source",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="LEGACY",
            )
        )
        batch_op.add_column(
            sa.Column(
                "status",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="CREDITED",
            )
        )
        batch_op.add_column(
            sa.Column("token", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(sa.Column("token_amount", core.db.TokenAmount(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "relay_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("operator", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(
            sa.Column("reference", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True)
        )
        batch_op.add_column(sa.Column("credited_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint("uq_sponsor_funding_job", ["relay_transaction_id"])
        batch_op.create_foreign_key(
            "fk_sponsor_fundings_relay_transaction_id",
            "relay_transactions",
            ["relay_transaction_id"],
            ["id"],
        )
    op.execute("UPDATE sponsor_fundings SET credited_at = created_at")


def downgrade() -> None:
    pending = op.get_bind().execute(
        sa.text("SELECT count(*) FROM sponsor_fundings WHERE status = 'PENDING'")
    )
    if pending.scalar_one():
        # Their transfers may still confirm: the tokens would move and never be credited.
        raise RuntimeError(
            "sponsor fundings are still PENDING: let the relayer confirm or fail them first"
        )
    with op.batch_alter_table("sponsor_fundings", schema=None) as batch_op:
        batch_op.drop_constraint("fk_sponsor_fundings_relay_transaction_id", type_="foreignkey")
        batch_op.drop_constraint("uq_sponsor_funding_job", type_="unique")
        batch_op.drop_column("credited_at")
        batch_op.drop_column("reference")
        batch_op.drop_column("operator")
        batch_op.drop_column("relay_transaction_id")
        batch_op.drop_column("token_amount")
        batch_op.drop_column("token")
        batch_op.drop_column("status")
        batch_op.drop_column("source")
