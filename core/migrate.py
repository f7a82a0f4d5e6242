"""Run the Alembic migrations from code (``ovpp-wallet migrate``, ``serve``, the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine

from core.settings import REPO_ROOT


def alembic_config(database_url: str) -> Config:
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(Path(REPO_ROOT / "migrations")))
    config.attributes["database_url"] = database_url
    return config


async def upgrade_to_head(database_url: str) -> None:
    """Bring the schema to the newest revision. Idempotent."""
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    await migrate_to(database_url, "head")


async def migrate_to(database_url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade (or with ``down`` downgrade) the schema to ``revision``, in one transaction."""
    config = alembic_config(database_url)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:

            def run(sync_connection: object) -> None:
                config.attributes["connection"] = sync_connection
                (command.downgrade if down else command.upgrade)(config, revision)

            await connection.run_sync(run)
    finally:
        await engine.dispose()
