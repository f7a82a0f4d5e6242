"""SQL of the wallet domain, and nothing else."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from core.db import insert_if_absent, new_id, utc_now
from wallet.keys import SealedKey
from wallet.models import Wallet


async def wallet_of_customer(session: AsyncSession, customer_id: str) -> Wallet | None:
    statement = select(Wallet).where(Wallet.customer_id == customer_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_wallet_if_absent(
    session: AsyncSession, *, customer_id: str, sealed: SealedKey
) -> bool:
    return await insert_if_absent(
        session,
        Wallet.__table__,
        {
            "id": new_id(),
            "customer_id": customer_id,
            "address": sealed.address,
            "encrypted_private_key": sealed.encrypted_private_key,
            "wrapped_data_key": sealed.wrapped_data_key,
            "kek_id": sealed.kek_id,
            "created_at": utc_now(),
        },
    )


async def sealed_rows_not_under_kek(
    session: AsyncSession, model: type, kek_id: str, *, limit: int
) -> list:
    """Up to ``limit`` rows of ``model`` (a table with sealed-key columns: wallets, relayer
    keys) whose data key is wrapped under another KEK."""
    statement = select(model).where(model.kek_id != kek_id).order_by(model.id).limit(limit)
    return list((await session.execute(statement)).scalars())


async def count_sealed_rows_not_under_kek(session: AsyncSession, model: type, kek_id: str) -> int:
    from sqlalchemy import func

    statement = select(func.count()).select_from(model).where(model.kek_id != kek_id)
    return int((await session.execute(statement)).scalar_one())


WALLET_LOOKUP_CHUNK = 500


async def wallet_addresses_among(session: AsyncSession, addresses: Iterable[str]) -> set[str]:
    """Which of these (checksummed) addresses are custodial wallets here: one indexed query per
    ``WALLET_LOOKUP_CHUNK`` addresses, however many there are."""
    candidates = sorted(set(addresses))
    found: set[str] = set()
    for start in range(0, len(candidates), WALLET_LOOKUP_CHUNK):
        chunk = candidates[start : start + WALLET_LOOKUP_CHUNK]
        rows = await session.execute(select(Wallet.address).where(Wallet.address.in_(chunk)))
        found.update(rows.scalars())
    return found
