"""Request-scoped DataLoaders: a list field's per-row lookups, batched into one query per kind
of row (and cached for the rest of the request)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlmodel import SQLModel
from strawberry.dataloader import DataLoader

from core.db import Database, rows_by_id, utc_now
from identity.models import Tenant
from programs.models import Device, Program
from programs.vtn import customer
from programs.vtn.capacity import DeviceState, device_states
from programs.vtn.customer import CustomerEvent
from programs.vtn.preferences import Limits
from relayer.models import RelayTransaction

Row = TypeVar("Row", bound=SQLModel)


class Loaders:
    """Made once per request (``RequestContext.loaders``). Each batch reads in a short session
    of its own, as query resolvers do: sibling fields resolve concurrently."""

    def __init__(self, db: Database) -> None:
        self.devices: DataLoader[str, Device | None] = _by_id(db, Device)
        self.programs: DataLoader[str, Program | None] = _by_id(db, Program)
        self.tenants: DataLoader[str, Tenant | None] = _by_id(db, Tenant)
        self.transactions: DataLoader[str, RelayTransaction | None] = _by_id(db, RelayTransaction)
        self.enrollment_limits: DataLoader[str, Limits] = _limits(db)
        self.enrollment_events: DataLoader[str, list[CustomerEvent]] = _events(db)
        self.device_states: DataLoader[str, DeviceState | None] = _device_states(db)


def _by_id(db: Database, model: type[Row]) -> DataLoader[str, Row | None]:
    async def load(ids: Sequence[str]) -> list[Row | None]:
        async with db.session() as session:
            return await rows_by_id(session, model, ids)

    return DataLoader(load_fn=load)


def _limits(db: Database) -> DataLoader[str, Limits]:
    async def load(enrollment_ids: Sequence[str]) -> list[Limits]:
        async with db.session() as session:
            found = await customer.limits_of(session, enrollment_ids)
        return [found[e] for e in enrollment_ids]

    return DataLoader(load_fn=load)


def _events(db: Database) -> DataLoader[str, list[CustomerEvent]]:
    """Each enrollment's events that ended ``customer.EVENTS_SINCE`` ago or later."""

    async def load(enrollment_ids: Sequence[str]) -> list[list[CustomerEvent]]:
        async with db.session() as session:
            found = await customer.events_of(
                session, enrollment_ids, ending_after=utc_now() - customer.EVENTS_SINCE
            )
        return [found[e] for e in enrollment_ids]

    return DataLoader(load_fn=load)


def _device_states(db: Database) -> DataLoader[str, DeviceState | None]:
    """Each enrollment's newest telemetry of the last ``customer.STATE_SINCE``."""

    async def load(enrollment_ids: Sequence[str]) -> list[DeviceState | None]:
        async with db.session() as session:
            found = await device_states(
                session,
                since=utc_now() - customer.STATE_SINCE,
                enrollment_ids=list(enrollment_ids),
            )
        return [found.get(e) for e in enrollment_ids]

    return DataLoader(load_fn=load)
