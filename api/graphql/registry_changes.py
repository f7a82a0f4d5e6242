"""What an administrator sees of its registry changes (``programs.registry_changes``)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from programs.models import RegistryChange as RegistryChangeRow

RegistryChangeStatus = strawberry.enum(
    Enum(
        "RegistryChangeStatus",
        {name: name for name in ("REGISTERING", "SENDING", "CONFIRMED", "FAILED")},
    ),
    description="REGISTERING (the registrar's registration) → SENDING (the utility wallet's "
    "calls) → CONFIRMED (landed on chain; the catalog follows it) or FAILED.",
)


@strawberry.type(
    description="An administrator's change of the utility or of a program in the registry, "
    "sent as relayed transactions: the catalog follows once it is CONFIRMED."
)
class RegistryChange:
    id: strawberry.ID
    target: str = strawberry.field(description="UTILITY or PROGRAM.")
    external_id: str | None = strawberry.field(description="The program's, for a PROGRAM.")
    status: RegistryChangeStatus  # type: ignore[valid-type]
    error: str | None
    tx_hash: str | None = strawberry.field(description="Its current transaction, once sent.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: RegistryChangeRow, tx_hash: str | None) -> RegistryChange:
        return cls(
            id=strawberry.ID(row.id),
            target=row.target,
            external_id=row.external_id,
            status=RegistryChangeStatus[row.status],
            error=row.error,
            tx_hash=tx_hash,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
