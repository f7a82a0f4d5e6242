"""registry changes: an administrator's writes to the registry go through the relayer

Issue 16 (review finding M4): ``registerUtility`` and ``upsertProgram`` no longer send from the
operator's key inside an API request. Each becomes a ``registry_changes`` row whose relayed jobs
(the registrar wallet's ``registerUtility``, then the utility wallet's calls) the processor
follows; the catalog is written from what landed. At most one open change per utility (a
partial unique index on SQLite and PostgreSQL).

Downgrade drops the table: an open change's jobs still land, and the catalog then lags until
the administrator asks again (identical changes send nothing).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 23:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

OPEN = "status IN ('REGISTERING', 'SENDING')"


def upgrade() -> None:
    op.create_table(
        "registry_changes",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("target", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column(
            "relay_transaction_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True
        ),
        sa.Column("error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["relay_transaction_id"], ["relay_transactions.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_registry_changes_status", "registry_changes", ["status"], unique=False)
    op.create_index(
        "ix_registry_changes_tenant_created",
        "registry_changes",
        ["tenant_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "uq_registry_change_open",
        "registry_changes",
        ["tenant_id"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("uq_registry_change_open", table_name="registry_changes")
    op.drop_index("ix_registry_changes_tenant_created", table_name="registry_changes")
    op.drop_index("ix_registry_changes_status", table_name="registry_changes")
    op.drop_table("registry_changes")
