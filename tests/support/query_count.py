"""Counting what a piece of work asks the database (saleor's query-count tests): the SQL
statements it sends and the rows they return, so that an N+1 or a read that grows with history
fails a test."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event

from core.db import Database


@dataclass
class Sent:
    """The statements sent, and the rows each returned (0 for one that returns none)."""

    statements: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.statements)

    @property
    def rows_read(self) -> int:
        return sum(self.rows)


_sent: ContextVar[Sent | None] = ContextVar("sent", default=None)


def _rows_of(cursor: Any) -> int:
    """Rows a statement returned. Both async drivers' adapted cursors (aiosqlite, asyncpg)
    have read every row by the time the statement has run: they wait in ``_rows``."""
    if cursor.description is None:
        return 0
    return len(cursor._rows)


@contextmanager
def counting_statements(db: Database) -> Iterator[Sent]:
    """The SQL statements this task (and the tasks it starts) sends while the block runs, and
    the rows they return; other users of the engine (a relayer polling in the background) are
    not counted."""

    def record(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        sent = _sent.get()
        if sent is not None:
            sent.statements.append(statement)
            sent.rows.append(_rows_of(cursor))

    sent = Sent()
    token = _sent.set(sent)
    event.listen(db.engine.sync_engine, "after_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine.sync_engine, "after_cursor_execute", record)
        _sent.reset(token)
