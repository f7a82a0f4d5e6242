"""A database of a test's own, for tests whose subprocesses must not share the session's."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from core.migrate import upgrade_to_head

# The same variable the session fixtures read (tests/conftest.py).
POSTGRES_ADMIN_URL = os.environ.get(
    "OVPP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def fresh_database(backend: str, *, directory: Path) -> AsyncIterator[str]:
    """A new database migrated to head: a SQLite file in ``directory``, or a PostgreSQL
    database created for the block and dropped after it (with any connection a killed
    process left behind)."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / f'own-{uuid.uuid4().hex[:8]}.db'}"
        await upgrade_to_head(url)
        yield url
        return
    name = f"ovpp_test_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = (
        POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
        + f"/{name}"
    )
    try:
        await upgrade_to_head(url)
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
