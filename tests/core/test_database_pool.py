"""The PostgreSQL pool: a connection the server closed is never handed out, and handing out a
live one costs no round trip (it replaces SQLAlchemy's pre-ping, three round trips each)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from sqlalchemy import event, text

from core.db import Database
from devsupport.databases import fresh_database
from tests.support.databases import DATABASE_PREFIX, POSTGRES_ADMIN_URL


async def _backend_pids(database: Database, count: int) -> list[int]:
    """Fills the pool with ``count`` connections (held at once) and returns their backends."""
    pids: list[int] = []
    ready = asyncio.Event()

    async def hold() -> None:
        async with database.session() as session:
            pids.append((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
            if len(pids) == count:
                ready.set()
            await ready.wait()

    await asyncio.gather(*(hold() for _ in range(count)))
    return pids


async def test_connections_the_server_closed_are_replaced_without_an_error(
    tmp_path: Path,
) -> None:
    async with fresh_database(
        "postgresql", directory=tmp_path, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
    ) as url:
        database = Database(url, pool_size=3)
        try:
            old = await _backend_pids(database, 3)
            admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
            try:
                for pid in old:
                    assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            await asyncio.sleep(0.2)  # the server's goodbye reaches the pooled connections

            new = await _backend_pids(database, 3)
            assert not set(new) & set(old)
        finally:
            await database.dispose()


async def test_checking_out_a_live_connection_sends_nothing(tmp_path: Path) -> None:
    async with fresh_database(
        "postgresql", directory=tmp_path, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
    ) as url:
        database = Database(url, pool_size=1)
        sent: list[str] = []  # the statements asyncpg sends outside prepared statements

        def log_queries(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_connection.driver_connection.add_query_logger(
                lambda record: sent.append(record.query)
            )

        event.listen(database.engine.sync_engine, "connect", log_queries)
        try:
            for _ in range(3):
                async with database.session() as session:
                    await session.execute(text("SELECT 1"))
            # each session's own transaction and nothing else (a ping is a transaction of
            # its own: BEGIN, ";", ROLLBACK)
            assert sent == ["BEGIN;", "COMMIT;"] * 3
        finally:
            await database.dispose()


async def test_bursts_beyond_the_pool_wait_for_its_connections_and_open_no_more(
    tmp_path: Path,
) -> None:
    """Every connection opened is kept and there are never more than ``pool_size``: bursts
    of twice as many sessions share the same few backends (an overflow would be closed as it
    came back, and the next burst would open new ones)."""
    async with fresh_database(
        "postgresql", directory=tmp_path, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
    ) as url:
        database = Database(url, pool_size=4)
        backends: set[int] = set()

        async def briefly() -> None:
            async with database.session() as session:
                statement = text("SELECT pg_backend_pid(), pg_sleep(0.05)")
                backends.add((await session.execute(statement)).first()[0])

        try:
            for _ in range(3):
                await asyncio.gather(*(briefly() for _ in range(8)))
            assert len(backends) == 4
        finally:
            await database.dispose()
