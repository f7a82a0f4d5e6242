"""Running one migration at a time on a database of a test's own, and reading it with SQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

NOW = "2026-12-01 00:00:00+00:00"


async def execute(url: str, *statements: str) -> list[tuple]:
    """Run the statements in one transaction; the rows of the last, if it returns any."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            result = None
            for statement in statements:
                result = await connection.execute(text(statement))
            return list(result.all()) if result is not None and result.returns_rows else []
    finally:
        await engine.dispose()
