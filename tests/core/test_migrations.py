"""The Alembic migrations and the models describe the same schema, on both backends.

The session's databases were brought to head by ``upgrade_to_head`` (tests/conftest.py); here
autogenerate compares what the migrations built with what the models declare, the way
``alembic revision --autogenerate`` would before anyone writes a new migration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import create_async_engine

from core.migrate import alembic_config, upgrade_to_head
from migrations.tables import metadata


def differences(connection: Connection) -> list[Any]:
    # The same comparison options as migrations/env.py uses to autogenerate.
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "render_as_batch": connection.dialect.name == "sqlite",
        },
    )
    return compare_metadata(context, metadata)


def _plain(index: Any) -> dict[str, Any]:
    """An index as comparable text: a partial index's WHERE clause by its SQL, not its object."""
    options = {key: str(value) for key, value in index.get("dialect_options", {}).items()}
    return {**index, "dialect_options": options}


def snapshot(connection: Connection) -> dict[str, Any]:
    """Every table's columns, indexes and constraints, and the Alembic revision."""
    inspector = inspect(connection)
    tables = {}
    for table in sorted(inspector.get_table_names()):
        tables[table] = {
            "columns": [
                (column["name"], str(column["type"]), column["nullable"])
                for column in inspector.get_columns(table)
            ],
            "indexes": sorted(str(_plain(index)) for index in inspector.get_indexes(table)),
            "unique": sorted(str(unique) for unique in inspector.get_unique_constraints(table)),
            "foreign_keys": sorted(str(key) for key in inspector.get_foreign_keys(table)),
        }
    revision = MigrationContext.configure(connection).get_current_revision()
    return {"tables": tables, "revision": revision}


@contextmanager
def statements_executed() -> Iterator[list[str]]:
    """Every SQL statement any engine in this process sends while the block runs."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_the_migrations_build_exactly_what_the_models_declare(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(differences)
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()

    assert found == [], f"models and migrations disagree; autogenerate would emit: {found}"
    # Guard against comparing two empty schemas.
    assert set(metadata.tables) <= set(tables)


async def test_upgrading_an_upgraded_database_changes_nothing(database_url: str) -> None:
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            before = await connection.run_sync(snapshot)

        with statements_executed() as statements:
            await upgrade_to_head(database_url)

        async with engine.connect() as connection:
            after = await connection.run_sync(snapshot)
    finally:
        await engine.dispose()

    assert before["revision"] == head
    assert after == before
    schema_changes = [
        statement
        for statement in statements
        if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP", "INSERT", "UPDATE"))
    ]
    assert schema_changes == [], schema_changes
    assert statements, "the upgrade must at least have read the current revision"
