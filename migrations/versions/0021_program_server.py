"""program server: the OpenADR 2.0b VTN's state (issue 19)

``vtn_vens`` (a VEN per OpenADR 2.0b enrollment, provisioned while it is ACTIVE, with its
registration and pinned certificate fingerprint), ``dr_events`` and ``dr_event_deliveries``
(demand-response events and each VEN's delivery and answer), ``vtn_report_streams`` (the report
streams VENs registered) and ``device_readings`` (their telemetry, kept
``OVPP_DEVICE_READINGS_RETENTION_DAYS``).

OpenADR 2.0b enrollments that are ACTIVE already get their VEN provisioned here (from the
``venName`` their connection parameters hold; a name two of them share goes to the first).
Downgrade drops the tables and their data.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 23:18:06.953217
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dr_events",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("program_row_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("signal_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("target_kw", sa.Float(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("modification_number", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column(
            "request_fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_row_id"],
            ["programs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_dr_event_idempotency"),
    )
    op.create_index(
        "ix_dr_events_program_start", "dr_events", ["program_row_id", "start"], unique=False
    )

    op.create_table(
        "device_readings",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("enrollment_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("resource_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("measurement", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("scale", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("quality", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "enrollment_id", "resource_id", "measurement", "timestamp", name="uq_device_reading"
        ),
    )
    op.create_index("ix_device_readings_timestamp", "device_readings", ["timestamp"], unique=False)

    op.create_table(
        "vtn_vens",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("ven_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("enrollment_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("program_row_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("tenant_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("ven_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("registration_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("cert_fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provisioned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deprovisioned_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["enrollment_id"],
            ["enrollments.id"],
        ),
        sa.ForeignKeyConstraint(
            ["program_row_id"],
            ["programs.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("enrollment_id"),
        sa.UniqueConstraint("ven_id"),
        sa.UniqueConstraint("ven_name"),
    )
    op.create_index("ix_vtn_vens_program_row_id", "vtn_vens", ["program_row_id"], unique=False)

    op.create_table(
        "dr_event_deliveries",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("ven_row_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("delivered_modification", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["dr_events.id"],
        ),
        sa.ForeignKeyConstraint(
            ["ven_row_id"],
            ["vtn_vens.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", "ven_row_id", name="uq_dr_event_delivery"),
    )
    op.create_index(
        "ix_dr_event_deliveries_event_id", "dr_event_deliveries", ["event_id"], unique=False
    )
    op.create_index(
        "ix_dr_event_deliveries_ven_row_id", "dr_event_deliveries", ["ven_row_id"], unique=False
    )

    op.create_table(
        "vtn_report_streams",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("ven_row_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("report_request_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("r_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("resource_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("measurement", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("scale", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("reading_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["ven_row_id"],
            ["vtn_vens.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_request_id", "r_id", name="uq_vtn_report_stream"),
    )
    _provision_active_enrollments()
    op.create_index(
        "ix_vtn_report_streams_ven_row_id", "vtn_report_streams", ["ven_row_id"], unique=False
    )


def _provision_active_enrollments() -> None:
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT id, program_row_id, tenant_id, connection_parameters FROM enrollments "
            "WHERE status = 'ACTIVE' AND protocol = 'OPENADR_2_0B' ORDER BY created_at"
        )
    ).all()
    vens = sa.table(
        "vtn_vens",
        *(sa.column(name) for name in ("id", "ven_name", "enrollment_id", "program_row_id")),
        *(sa.column(name) for name in ("tenant_id", "status", "provisioned_at")),
    )
    names: set[str] = set()
    for enrollment_id, program_row_id, tenant_id, parameters in rows:
        if isinstance(parameters, str):
            parameters = json.loads(parameters)
        name = (parameters or {}).get("venName")
        if not name or name in names:
            continue
        names.add(name)
        connection.execute(
            vens.insert().values(
                id=str(uuid.uuid4()),
                ven_name=name,
                enrollment_id=enrollment_id,
                program_row_id=program_row_id,
                tenant_id=tenant_id,
                status="PROVISIONED",
                provisioned_at=datetime.now(UTC),
            )
        )


def downgrade() -> None:
    op.drop_index("ix_vtn_report_streams_ven_row_id", table_name="vtn_report_streams")

    op.drop_table("vtn_report_streams")
    op.drop_index("ix_dr_event_deliveries_ven_row_id", table_name="dr_event_deliveries")
    op.drop_index("ix_dr_event_deliveries_event_id", table_name="dr_event_deliveries")

    op.drop_table("dr_event_deliveries")
    op.drop_index("ix_vtn_vens_program_row_id", table_name="vtn_vens")

    op.drop_table("vtn_vens")
    op.drop_index("ix_device_readings_timestamp", table_name="device_readings")

    op.drop_table("device_readings")
    op.drop_index("ix_dr_events_program_start", table_name="dr_events")

    op.drop_table("dr_events")
