# ruff: noqa: S608 (the SQL is built from this test's own constants)
"""Migration 0016: the fundings that exist (an administrator's unpaid credits) become LEGACY
and CREDITED with their funds kept; its downgrade drops what the old table cannot hold (a
pending funding) and keeps the rest."""

from __future__ import annotations

import pytest

from core.migrate import migrate_to
from tests.support.migrations import NOW, execute


async def fundings(url: str) -> list[tuple[str, int]]:
    rows = await execute(
        url, "SELECT idempotency_key, amount_wei FROM sponsor_fundings ORDER BY idempotency_key"
    )
    return [(key, int(amount)) for key, amount in rows]


async def test_existing_fundings_become_legacy_credits_and_the_downgrade_keeps_them(
    empty_database: str,
) -> None:
    url = empty_database
    await migrate_to(url, "0015")
    await execute(
        url,
        "INSERT INTO tenants (id, slug, name, issuer, audience, created_at) "
        f"VALUES ('t', 't', 'T', 'https://t.example', 'aud', '{NOW}')",
        "INSERT INTO sponsors (id, tenant_id, name, active, sponsors_transfers, funds_wei, "
        "per_transaction_cap_wei, per_customer_daily_cap_wei, period_cap_wei, period_seconds, "
        "period_started_at, spent_wei, period_spent_wei, created_at) VALUES ('s', 't', 'T', "
        f"true, true, 500, 1, 1, 1, 86400, '{NOW}', 0, 0, '{NOW}')",
        "INSERT INTO sponsor_fundings (id, sponsor_id, idempotency_key, amount_wei, created_at) "
        f"VALUES ('f', 's', 'free', 500, '{NOW}')",
    )

    await migrate_to(url, "0016")
    [row] = await execute(
        url,
        "SELECT source, status, credited_at IS NOT NULL, relay_transaction_id, operator "
        "FROM sponsor_fundings",
    )
    assert tuple(row) == ("LEGACY", "CREDITED", True, None, None)
    [(funds,)] = await execute(url, "SELECT funds_wei FROM sponsors")
    assert int(funds) == 500

    await execute(
        url,
        "INSERT INTO sponsor_fundings (id, sponsor_id, idempotency_key, amount_wei, source, "
        f"status, created_at) VALUES ('p', 's', 'pending', 7, 'ON_CHAIN', 'PENDING', '{NOW}')",
    )
    with pytest.raises(RuntimeError, match="still PENDING"):  # its transfer may yet confirm
        await migrate_to(url, "0015", down=True)
    await execute(url, "UPDATE sponsor_fundings SET status = 'FAILED' WHERE id = 'p'")
    await execute(url, "DELETE FROM sponsor_fundings WHERE id = 'p'")
    await migrate_to(url, "0015", down=True)
    assert await fundings(url) == [("free", 500)]
    await migrate_to(url, "0016")
    assert await fundings(url) == [("free", 500)]
