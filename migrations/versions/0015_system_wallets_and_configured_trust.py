"""system wallets are their own kind of customer; a tenant is trusted while configured, and
names the clients that may administer it

``customers.kind``: ``CUSTOMER`` (a person, found by the ``sub`` of their utility's tokens) or
``SYSTEM`` (a utility's registry and sponsor wallet, the onramp treasury: named by the code,
never found by a sign-in). Uniqueness becomes (tenant, kind, subject): a token whose subject
equals a system wallet's name gets a customer wallet of its own, never the system one. Existing
rows are marked ``SYSTEM`` when they are a utility's wallet (in ``utility_accounts``, or named
``utility-account:<their tenant's slug>`` with no email, as ``utility_wallet`` made them before
an onboarding that did not finish; a person's token with that subject usually carries an email
and keeps its wallet) or a customer of a system tenant (a ``urn:`` issuer: the onramp treasury).

``tenants.enabled``: set from the configuration at every start (``sync_tenants``); the issuer
directory loads only enabled tenants. Existing rows start enabled; the next start disables
those the configuration no longer lists. ``tenants.admin_client_ids``: the OAuth clients whose
tokens may use ``utility:admin`` (also set at every start); existing rows start with none.

Downgrade: the old unique (tenant, subject) cannot hold a person and a system wallet of the
same name; the person's subject is renamed (``…#customer:<id>``), so that the old code, which
finds customers by subject alone, still never hands the system wallet to the person's token.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MARK_SYSTEM_WALLETS = """
UPDATE customers SET kind = 'SYSTEM'
WHERE id IN (
        SELECT w.customer_id FROM wallets w JOIN utility_accounts u ON u.wallet_id = w.id
    )
    OR tenant_id IN (SELECT t.id FROM tenants t WHERE t.issuer LIKE 'urn:%')
    OR (
        email IS NULL
        AND subject = (
            SELECT 'utility-account:' || t.slug FROM tenants t WHERE t.id = customers.tenant_id
        )
    )
"""

RENAME_CUSTOMERS_NAMED_LIKE_SYSTEM_WALLETS = """
UPDATE customers SET subject = substr(subject, 1, 200) || '#customer:' || id
WHERE kind = 'CUSTOMER' AND EXISTS (
    SELECT 1 FROM customers s
    WHERE s.kind = 'SYSTEM' AND s.tenant_id = customers.tenant_id AND s.subject = customers.subject
)
"""


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(
            sa.Column("admin_client_ids", sa.JSON(), nullable=False, server_default="[]")
        )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kind",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="CUSTOMER",
            )
        )
        batch_op.drop_constraint("uq_customers_tenant_subject", type_="unique")
        batch_op.create_unique_constraint(
            "uq_customers_tenant_kind_subject", ["tenant_id", "kind", "subject"]
        )
    op.execute(MARK_SYSTEM_WALLETS)


def downgrade() -> None:
    op.execute(RENAME_CUSTOMERS_NAMED_LIKE_SYSTEM_WALLETS)
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_constraint("uq_customers_tenant_kind_subject", type_="unique")
        batch_op.create_unique_constraint("uq_customers_tenant_subject", ["tenant_id", "subject"])
        batch_op.drop_column("kind")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("admin_client_ids")
        batch_op.drop_column("enabled")
