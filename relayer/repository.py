"""SQL reads of relayed transactions for the API."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from relayer.models import JobKind, RelayTransaction


async def transaction_of_wallet(
    session: AsyncSession, *, wallet_id: str, transaction_id: str
) -> RelayTransaction | None:
    statement = select(RelayTransaction).where(
        RelayTransaction.id == transaction_id, RelayTransaction.wallet_id == wallet_id
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def transactions_page(
    session: AsyncSession, *, wallet_id: str, first: int, after: tuple[datetime, str] | None
) -> list[RelayTransaction]:
    """Newest first; ``first + 1`` rows so the caller knows whether another page exists."""
    statement = select(RelayTransaction).where(
        RelayTransaction.wallet_id == wallet_id, RelayTransaction.kind != JobKind.NONCE_FILL
    )
    if after is not None:
        created, row_id = after
        statement = statement.where(
            or_(
                RelayTransaction.created_at < created,
                and_(RelayTransaction.created_at == created, RelayTransaction.id < row_id),
            )
        )
    statement = statement.order_by(
        RelayTransaction.created_at.desc(), RelayTransaction.id.desc()
    ).limit(first + 1)
    return list((await session.execute(statement)).scalars())
