"""Database engine and sessions.

One ``Database`` per process. A request or a job opens one session with ``db.session()``
and commits once at its end (services only ``flush()``). SQLite runs in WAL mode with a
busy timeout so concurrent requests wait for the writer instead of failing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Numeric, String, event, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator


def new_id() -> str:
    return str(uuid.uuid4())


def utc_now() -> datetime:
    return datetime.now(UTC)


class TokenAmount(TypeDecorator[int]):
    """A base-unit token amount, always a Python int: ``NUMERIC(78,0)`` (any uint256) in
    PostgreSQL; exact decimal text in SQLite, whose NUMERIC affinity would turn a large value
    into a lossy REAL."""

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"token amounts are ints in base units, got {type(value).__name__}")
        # SQLite has no arbitrary-precision NUMERIC: store the exact decimal text there.
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        return None if value is None else int(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC: PostgreSQL keeps the zone,
    SQLite stores none and would hand back a naive datetime."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Database:
    def __init__(self, url: str, *, pool_size: int = 20, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            # Every connection opened is kept: an overflow above a kept core is closed as it
            # comes back and opened again by the next burst, so under steady concurrency above
            # the core a share of requests pays a new connection (client and server side).
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = 0
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            event.listen(self.engine.sync_engine, "checkout", _refuse_closed_connection)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # The same pool; its connections go back to the default isolation when returned.
        self._autocommit_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends normally, rolls back otherwise."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection without a transaction: each statement commits by itself, with
        no ``BEGIN``/``COMMIT`` round trips around it. Only for a unit of work that is one
        statement (a webhook's insert); anything that needs two atomic uses ``session()``."""
        async with self._autocommit_engine.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hands out no pooled connection that the server has closed (a restart, a terminated
    backend, an idle timeout), without a round trip: asyncpg marks a connection closed as
    soon as the event loop reads the server's goodbye. SQLAlchemy's ``pool_pre_ping`` would
    ask the server instead, and its asyncpg ping is three round trips (``BEGIN``, ``;``,
    ``ROLLBACK``) on every checkout: measured, a fifth of the database work of a transfer.
    Raising ``DisconnectionError`` here makes the pool discard the connection and check out
    (or open) another one, up to three times."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the pooled connection was closed by the server")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _dialect(executor: AsyncSession | AsyncConnection) -> str:
    if isinstance(executor, AsyncConnection):
        return executor.dialect.name
    return executor.bind.dialect.name if executor.bind is not None else "sqlite"


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


_UPSERTS: dict[tuple[str, Any, tuple[str, ...]], Any] = {}


async def upsert(
    session: AsyncSession,
    table: Any,
    values: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    update: tuple[str, ...],
) -> None:
    """``INSERT … ON CONFLICT (primary key) DO UPDATE SET`` the ``update`` columns to these
    values (one row, or many in one execution): one statement whether or not the row exists
    (the caller holds whatever lock makes the values current). The statement is built once per
    dialect, table and columns."""
    dialect = _dialect(session)
    statement = _UPSERTS.get((dialect, table, update))
    if statement is None:
        statement = _dialect_insert(dialect)(table)
        statement = statement.on_conflict_do_update(
            index_elements=[column.name for column in table.primary_key.columns],
            set_={name: statement.excluded[name] for name in update},
        )
        _UPSERTS[(dialect, table, update)] = statement
    await session.execute(statement, values)


_INSERTS: dict[Any, Any] = {}


async def insert_rows(session: AsyncSession, *rows: Any) -> None:
    """INSERT these new model objects with Core statements, one per row, without adding them to
    the session: the same rows as ``session.add`` + ``flush`` for a fraction of the unit of
    work's CPU, for hot paths whose objects are not changed afterwards."""
    for row in rows:
        table = row.__table__
        statement = _INSERTS.get(table)
        if statement is None:
            statement = _INSERTS[table] = table.insert()
        await session.execute(
            statement, {column.key: getattr(row, column.key) for column in table.columns}
        )


_INSERTS_IF_ABSENT: dict[tuple[str, Any], Any] = {}


async def insert_if_absent(
    executor: AsyncSession | AsyncConnection, table: Any, values: dict[str, Any]
) -> bool:
    """``INSERT … ON CONFLICT DO NOTHING``: settles a creation race in SQL.

    Returns whether this call inserted the row; the loser of a race sees ``False`` and reads
    the winner's row instead. The statement is built once per dialect and table (the values
    are its parameters), so its compiled form is cached too. ``executor`` is a session, or a
    connection (``Database.autocommit``).
    """
    dialect = _dialect(executor)
    statement = _INSERTS_IF_ABSENT.get((dialect, table))
    if statement is None:
        statement = _dialect_insert(dialect)(table).on_conflict_do_nothing()
        _INSERTS_IF_ABSENT[(dialect, table)] = statement
    result = await executor.execute(statement, values)
    return bool(result.rowcount)


async def insert_many_if_absent(
    session: AsyncSession | AsyncConnection,
    table: Any,
    rows: Sequence[dict[str, Any]],
    *,
    returning: Sequence[Any] = (),
) -> list[Any]:
    """``INSERT … ON CONFLICT DO NOTHING`` of many rows in one execution: a row that would
    break a unique key is skipped, the others go in. With ``returning`` columns, returns those
    of the rows inserted (none of the skipped ones). ``session`` may be a connection
    (``Database.autocommit``); the statement is built once per dialect and table."""
    if not rows:
        return []
    dialect = _dialect(session)
    statement = _INSERTS_IF_ABSENT.get((dialect, table))
    if statement is None:
        statement = _dialect_insert(dialect)(table).on_conflict_do_nothing()
        _INSERTS_IF_ABSENT[(dialect, table)] = statement
    if not returning:
        await session.execute(statement, list(rows))
        return []
    inserted = await session.execute(statement.returning(*returning), list(rows))
    return list(inserted.all())


async def rows_by_id(session: AsyncSession, model: Any, ids: Sequence[str]) -> list[Any]:
    """The rows of ``model`` with these ids, in the order asked, ``None`` where absent: one
    query for a whole batch (the API's DataLoaders)."""
    rows = (await session.execute(select(model).where(model.id.in_(ids)))).scalars()
    found = {row.id: row for row in rows}
    return [found.get(row_id) for row_id in ids]
