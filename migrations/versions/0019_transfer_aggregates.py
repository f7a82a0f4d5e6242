"""a transfer reads what it checks from running totals and indexes, not a wallet's history

Issue 17: ``request_transfer`` loaded every job of the wallet from the last 24 hours. Now each
job carries ``running_total``, its wallet's running total of its token, this job included, so
what a wallet sent in the daily window is the difference of two totals found by index probes
(``ix_relay_tx_wallet_token_created``), less its failed jobs of the window
(``ix_relay_tx_wallet_status_token``, which replaces ``ix_relay_tx_wallet_status`` and still
serves its open jobs); whether a quote was used is one probe of ``ix_relay_tx_quote``; a
wallet's card purchases still held are a range of ``ix_onramp_payments_wallet_delivered``.

Existing jobs get their totals here, in the order they were created.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-12 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import core.db

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_POSTGRES_BACKFILL = """
UPDATE relay_transactions AS job SET running_total = totals.running_total
FROM (
    SELECT id, SUM(amount) OVER (
        PARTITION BY wallet_id, token ORDER BY created_at, id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS running_total
    FROM relay_transactions
) AS totals
WHERE job.id = totals.id
"""


def upgrade() -> None:
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("running_total", core.db.TokenAmount(), nullable=False, server_default="0")
        )
        batch_op.drop_index("ix_relay_tx_wallet_status")
        batch_op.create_index(
            "ix_relay_tx_wallet_status_token", ["wallet_id", "status", "token", "created_at"]
        )
        batch_op.create_index(
            "ix_relay_tx_wallet_token_created", ["wallet_id", "token", "created_at"]
        )
        batch_op.create_index("ix_relay_tx_quote", ["quote_id"])
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.create_index("ix_onramp_payments_wallet_delivered", ["wallet_id", "delivered_at"])
    connection = op.get_bind()
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(_POSTGRES_BACKFILL))
    else:
        _backfill_in_python(connection)


def _backfill_in_python(connection: sa.Connection) -> None:
    """SQLite keeps amounts as exact decimal text, which its SUM would turn into a lossy REAL."""
    rows = connection.execute(
        sa.text(
            "SELECT id, wallet_id, token, amount FROM relay_transactions "
            "ORDER BY wallet_id, token, created_at, id"
        )
    )
    totals: dict[tuple[str, str], int] = {}
    updates: list[dict[str, str]] = []
    for job_id, wallet_id, token, amount in rows:
        key = (wallet_id, token)
        totals[key] = totals.get(key, 0) + int(amount)
        updates.append({"id": job_id, "total": str(totals[key])})
    if updates:
        connection.execute(
            sa.text("UPDATE relay_transactions SET running_total = :total WHERE id = :id"),
            updates,
        )


def downgrade() -> None:
    with op.batch_alter_table("onramp_payments", schema=None) as batch_op:
        batch_op.drop_index("ix_onramp_payments_wallet_delivered")
    with op.batch_alter_table("relay_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_relay_tx_quote")
        batch_op.drop_index("ix_relay_tx_wallet_token_created")
        batch_op.drop_index("ix_relay_tx_wallet_status_token")
        batch_op.create_index("ix_relay_tx_wallet_status", ["wallet_id", "status"])
        batch_op.drop_column("running_total")
