"""client idempotency keys leave the backend's own key namespaces

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 04:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As in relayer/errors.py when this revision was written (a migration does not follow the code).
RESERVED_PREFIXES = ("nonce-fill:", "enroll:", "unenroll:", "enrollment:", "onramp-delivery:")


def upgrade() -> None:
    """A client key in one of the backend's namespaces, stored before such keys were refused,
    is renamed to its row's id (unique, and no prefix of the backend's): a filler, enrollment
    call or payment the backend makes later can no longer collide with it. The client cannot
    replay that key any more anyway: it is refused now. Keys the backend made (rows of the
    other kinds and purposes) are untouched."""
    reserved = " OR ".join(
        f"substr(idempotency_key, 1, {len(prefix)}) = '{prefix}'" for prefix in RESERVED_PREFIXES
    )
    op.execute(
        sa.text(
            f"UPDATE relay_transactions SET idempotency_key = id "  # noqa: S608 (constants)
            f"WHERE kind = 'TRANSFER' AND ({reserved})"
        )
    )
    op.execute(
        sa.text(
            f"UPDATE onramp_payments SET idempotency_key = id "  # noqa: S608 (constants)
            f"WHERE purpose = 'PURCHASE' AND ({reserved})"
        )
    )


def downgrade() -> None:
    """Nothing to undo: the renamed keys were dead."""
