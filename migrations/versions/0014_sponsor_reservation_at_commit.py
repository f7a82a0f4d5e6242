"""a sponsored transfer's reservation is made by its commit in PostgreSQL; the sponsor's row has
no foreign keys from the rows a transfer inserts

Every sponsored transfer of a utility takes its sponsor's row lock, and holds it until its
transaction commits. Taken by the API in Python, the lock spanned seven round trips (lock,
customer's day, job, sponsor update, day upsert, charge, commit), each a wait for the API's
event loop and for a core, and held a utility's sponsored transfers to one at a time (26-32
of 32 transfers in flight waited on it). One statement for the reservation still left one
such wait, between its answer and the commit.

So the reservation is now made inside the commit. A sponsored transfer inserts its charge with
``reserve_on_commit``; the deferred constraint trigger ``sponsor_charges_reserve_on_commit``
runs ``ovpp_reserve_sponsor_charge()`` when the transaction commits: it locks the sponsor (FOR
NO KEY UPDATE), rolls its period if it has ended, reads the customer's day after the lock,
judges the budget, and adds the charge to the totals and the customer's day; or it raises
SQLSTATE OV001 with the rule's name, and the whole transaction (job, nonces, charge) is rolled
back. The lock is then held only while the commit runs. The instant that decides the period
and the day is the charge's ``created_at``, as for every reservation and its settlement; a
charge made before a period another transaction started meanwhile is left out of that
period's total, as its settlement leaves it out.

The rules are ``relayer.sponsorship.rules.require_budget``'s, in its order. SQLite keeps the Python
path (one writer, so no lock to wait on; ``reserve_on_commit`` stays false there), and the
test suite runs both.

Two foreign keys go: ``relay_transactions.sponsor_id`` and ``sponsor_charges.sponsor_id``.
Checking them took ``KEY SHARE`` on the sponsor's row for the rest of the transaction, and a
transaction that holds any lock on a row waits for a stronger one without joining the row's
queue (PostgreSQL skips the tuple lock then, to avoid deadlocks): every commit woke all the
waiting transfers at once, they raced, and all but one waited again (measured: twice
PostgreSQL's CPU, half the throughput). The trigger refuses a charge whose sponsor does not
exist; the Python paths look the sponsor up before they charge it; sponsors are never deleted.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 03:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

RESERVE_SPONSOR_CHARGE = """
CREATE OR REPLACE FUNCTION ovpp_reserve_sponsor_charge() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    s sponsors%ROWTYPE;
    v_now timestamptz := NEW.created_at;
    v_day text := to_char(NEW.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD');
    v_period_started_at timestamptz;
    v_period_spent_wei numeric;
    v_periods numeric;
    v_customer_day_wei numeric;
    v_in_period boolean;
    v_refusal text;
BEGIN
    SELECT * INTO s FROM sponsors WHERE id = NEW.sponsor_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = 'ENDED';
    END IF;
    -- The period as it stands at the charge's instant (sponsorship._roll_period, closed form).
    v_period_started_at := s.period_started_at;
    v_period_spent_wei := s.period_spent_wei;
    IF v_period_started_at + make_interval(secs => s.period_seconds) <= v_now THEN
        v_periods := floor(extract(epoch FROM v_now - v_period_started_at) / s.period_seconds);
        v_period_started_at := v_period_started_at
            + make_interval(secs => (v_periods * s.period_seconds)::double precision);
        v_period_spent_wei := 0;
    END IF;
    -- A charge made before a period that another transaction started while this one was
    -- being committed belongs to the period before: it is not counted in (nor capped by) the
    -- current one, as its settlement and fee bumps (by created_at) will not count it there.
    v_in_period := NEW.created_at >= v_period_started_at;
    -- Read after the lock: this statement's snapshot sees what the last holder committed.
    SELECT d.spent_wei INTO v_customer_day_wei FROM sponsor_customer_days d
        WHERE d.sponsor_id = NEW.sponsor_id AND d.customer_id = NEW.customer_id
        AND d.day = v_day;
    v_customer_day_wei := coalesce(v_customer_day_wei, 0);

    v_refusal := CASE
        WHEN NOT s.active OR NOT s.sponsors_transfers THEN 'NOT_ELIGIBLE'
        WHEN NEW.amount_wei > s.per_transaction_cap_wei THEN 'PER_TRANSACTION_CAP'
        WHEN s.spent_wei + NEW.amount_wei > s.funds_wei THEN 'BUDGET_EXHAUSTED'
        WHEN v_in_period AND v_period_spent_wei + NEW.amount_wei > s.period_cap_wei
            THEN 'PERIOD_CAP'
        WHEN v_customer_day_wei + NEW.amount_wei > s.per_customer_daily_cap_wei
            THEN 'CUSTOMER_DAILY_CAP'
    END;
    IF v_refusal IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'OV001', MESSAGE = v_refusal, DETAIL = s.name,
            HINT = s.per_transaction_cap_wei::text;
    END IF;
    UPDATE sponsors SET
        spent_wei = s.spent_wei + NEW.amount_wei,
        period_spent_wei = v_period_spent_wei
            + CASE WHEN v_in_period THEN NEW.amount_wei ELSE 0 END,
        period_started_at = v_period_started_at
    WHERE id = NEW.sponsor_id;
    INSERT INTO sponsor_customer_days (sponsor_id, customer_id, day, spent_wei)
        VALUES (NEW.sponsor_id, NEW.customer_id, v_day, NEW.amount_wei)
        ON CONFLICT (sponsor_id, customer_id, day)
        DO UPDATE SET spent_wei = sponsor_customer_days.spent_wei + EXCLUDED.spent_wei;
    RETURN NULL;
END
$$
"""

RESERVE_ON_COMMIT = """
CREATE CONSTRAINT TRIGGER sponsor_charges_reserve_on_commit
    AFTER INSERT ON sponsor_charges
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.reserve_on_commit)
    EXECUTE FUNCTION ovpp_reserve_sponsor_charge()
"""

# SQLite's foreign keys have no names; batch mode finds them by the convention's names.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("sponsor_charges", naming_convention=NAMING) as batch_op:
        batch_op.add_column(
            sa.Column("reserve_on_commit", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.drop_constraint(
            "sponsor_charges_sponsor_id_fkey"
            if postgresql
            else "fk_sponsor_charges_sponsor_id_sponsors",
            type_="foreignkey",
        )
    with op.batch_alter_table("relay_transactions", naming_convention=NAMING) as batch_op:
        batch_op.drop_constraint(
            "relay_transactions_sponsor_id_fkey"
            if postgresql
            else "fk_relay_transactions_sponsor_id_sponsors",
            type_="foreignkey",
        )
    if postgresql:
        op.execute(RESERVE_SPONSOR_CHARGE)
        op.execute(RESERVE_ON_COMMIT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS sponsor_charges_reserve_on_commit ON sponsor_charges")
        op.execute("DROP FUNCTION IF EXISTS ovpp_reserve_sponsor_charge()")
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("relay_transactions") as batch_op:
        batch_op.create_foreign_key(
            "relay_transactions_sponsor_id_fkey"
            if postgresql
            else "fk_relay_transactions_sponsor_id_sponsors",
            "sponsors",
            ["sponsor_id"],
            ["id"],
        )
    with op.batch_alter_table("sponsor_charges") as batch_op:
        batch_op.create_foreign_key(
            "sponsor_charges_sponsor_id_fkey"
            if postgresql
            else "fk_sponsor_charges_sponsor_id_sponsors",
            "sponsors",
            ["sponsor_id"],
            ["id"],
        )
        batch_op.drop_column("reserve_on_commit")
