"""Throwaway databases migrated to head, for the tests and the benchmarks: a SQLite file, or a
PostgreSQL database created through an admin connection and dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from core.migrate import upgrade_to_head


@asynccontextmanager
async def fresh_database(
    backend: str, *, directory: Path, admin_url: str, prefix: str
) -> AsyncIterator[str]:
    """A new database migrated to head: a SQLite file in ``directory``, or a PostgreSQL
    database named ``<prefix>_<random>`` on ``admin_url``'s server, dropped after the block
    (with any connection a killed process left behind)."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / f'{prefix}-{uuid.uuid4().hex[:8]}.db'}"
        await upgrade_to_head(url)
        yield url
        return
    url = await create_postgres_database(admin_url, prefix=prefix)
    try:
        await upgrade_to_head(url)
        yield url
    finally:
        await drop_postgres_database(admin_url, url)


async def create_postgres_database(admin_url: str, *, prefix: str) -> str:
    """Create an empty database ``<prefix>_<random>``; returns its SQLAlchemy (asyncpg) URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(admin_url, f'CREATE DATABASE "{name}"')
    return (
        admin_url.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"
    )


async def drop_postgres_database(admin_url: str, url: str) -> None:
    """Drop the database of ``url``, and any connection still open to it."""
    name = url.rsplit("/", 1)[1]
    await _admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(admin_url: str, statement: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
