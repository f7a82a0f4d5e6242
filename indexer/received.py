"""The hook point of ``activity.received``: what the indexer has just stored for a recipient."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession


async def emit_activity_received(
    session: AsyncSession, *, chain_id: int, received: Sequence[Row[Any]]
) -> None:
    """Called in the transaction that stores ``received``: the transfers (``repository.MOVED``
    columns) just indexed whose recipient is a custodial wallet here. App webhooks (issue 18)
    emit one ``activity.received`` event per transfer here, in the same transaction, into
    their outbox (the recipient's tenant from ``wallets`` → ``customers``); a reorganisation
    that drops the transfer does not call it back. Nothing is emitted yet."""
    del session, chain_id, received
