"""Wallet logic: every customer has exactly one custodial wallet."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import Database
from wallet import repository
from wallet.keys import SealedRow, generate_sealed_key, rewrap, sealed_key_of
from wallet.kms import KeyRing
from wallet.models import Wallet


async def ensure_wallet(session: AsyncSession, *, customer_id: str, keyring: KeyRing) -> Wallet:
    """The customer's wallet, created on first use. Safe under races: the unique customer id
    settles it in SQL, and a losing racer's fresh key is simply never stored."""
    wallet = await repository.wallet_of_customer(session, customer_id)
    if wallet is not None:
        return wallet
    await repository.insert_wallet_if_absent(
        session, customer_id=customer_id, sealed=generate_sealed_key(keyring.current)
    )
    wallet = await repository.wallet_of_customer(session, customer_id)
    assert wallet is not None
    return wallet


async def rewrap_all(
    db: Database,
    *,
    keyring: KeyRing,
    models: Sequence[type[SealedRow]],
    progress: Callable[[int, int], None] | None = None,
    batch_size: int = 500,
) -> int:
    """Re-wrap every data key not under the current KEK in the tables ``models`` (customers'
    wallets, relayer keys). Each batch commits on its own, so an interrupted run resumes where
    it stopped; the private keys themselves are never decrypted."""
    new_kek = keyring.current
    async with db.session() as session:
        total = 0
        for model in models:
            total += await repository.count_sealed_rows_not_under_kek(
                session, model, new_kek.key_id
            )
    done = 0
    for model in models:
        while True:
            async with db.session() as session:
                batch = await repository.sealed_rows_not_under_kek(
                    session, model, new_kek.key_id, limit=batch_size
                )
                for row in batch:
                    resealed = rewrap(sealed_key_of(row), keyring=keyring, new_kek=new_kek)
                    row.wrapped_data_key = resealed.wrapped_data_key
                    row.kek_id = resealed.kek_id
                    session.add(row)
            if not batch:
                break
            done += len(batch)
            if progress is not None:
                progress(done, total)
    return done
