"""Request-scoped DataLoaders: a list field's per-row lookups, batched into one query per kind
of row (and cached for the rest of the request)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlmodel import SQLModel, select
from strawberry.dataloader import DataLoader

from core.db import Database
from identity.models import Tenant
from programs.models import Device, Program

Row = TypeVar("Row", bound=SQLModel)


class Loaders:
    """Made once per request (``RequestContext.loaders``). Each batch reads in a short session
    of its own, as query resolvers do: sibling fields resolve concurrently."""

    def __init__(self, db: Database) -> None:
        self.devices: DataLoader[str, Device | None] = _by_id(db, Device)
        self.programs: DataLoader[str, Program | None] = _by_id(db, Program)
        self.tenants: DataLoader[str, Tenant | None] = _by_id(db, Tenant)


def _by_id(db: Database, model: type[Row]) -> DataLoader[str, Row | None]:
    async def load(ids: Sequence[str]) -> list[Row | None]:
        async with db.session() as session:
            column: Any = model.id  # type: ignore[attr-defined]
            rows = (await session.execute(select(model).where(column.in_(ids)))).scalars()
            found = {row.id: row for row in rows}  # type: ignore[attr-defined]
        return [found.get(row_id) for row_id in ids]

    return DataLoader(load_fn=load)
