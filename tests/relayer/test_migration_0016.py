# ruff: noqa: S608 (the SQL is built from this test's own constants)
"""Migration 0016: the fundings that exist (an administrator's unpaid credits) become LEGACY
and CREDITED with their funds kept; its downgrade drops what the old table cannot hold (a
pending funding) and keeps the rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.migrate import alembic_config
from devsupport.databases import create_postgres_database, drop_postgres_database
from tests.support.databases import DATABASE_PREFIX, POSTGRES_ADMIN_URL

NOW = "2026-12-01 00:00:00+00:00"


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    url = await create_postgres_database(POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX)
    try:
        yield url
    finally:
        await drop_postgres_database(POSTGRES_ADMIN_URL, url)


async def migrate(url: str, revision: str, *, down: bool = False) -> None:
    config = alembic_config(url)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:

            def run(sync_connection: object) -> None:
                config.attributes["connection"] = sync_connection
                (command.downgrade if down else command.upgrade)(config, revision)

            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def execute(url: str, *statements: str) -> list[tuple]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = None
            for statement in statements:
                result = await connection.execute(text(statement))
            return list(result.all()) if result is not None and result.returns_rows else []
    finally:
        await engine.dispose()


async def fundings(url: str) -> list[tuple[str, int]]:
    rows = await execute(
        url, "SELECT idempotency_key, amount_wei FROM sponsor_fundings ORDER BY idempotency_key"
    )
    return [(key, int(amount)) for key, amount in rows]


async def test_existing_fundings_become_legacy_credits_and_the_downgrade_keeps_them(
    empty_database: str,
) -> None:
    url = empty_database
    await migrate(url, "0015")
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

    await migrate(url, "0016")
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
        await migrate(url, "0015", down=True)
    await execute(url, "UPDATE sponsor_fundings SET status = 'FAILED' WHERE id = 'p'")
    await execute(url, "DELETE FROM sponsor_fundings WHERE id = 'p'")
    await migrate(url, "0015", down=True)
    assert await fundings(url) == [("free", 500)]
    await migrate(url, "0016")
    assert await fundings(url) == [("free", 500)]
