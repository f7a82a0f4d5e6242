"""A wallet's history, seeded by direct inserts: many past transfers in a few statements, with
the running totals the relayer keeps (``RelayTransaction.running_total``). For the tests and
benchmarks of what a transfer costs whatever its wallet's history."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import insert, select

from core.db import Database, utc_now
from relayer.keys import relayer_key_for
from relayer.models import JobKind, RelayStatus, RelayTransaction
from relayer.repository import running_total
from wallet.models import Wallet

CHUNK = 1_000


async def seed_transfers(
    db: Database,
    *,
    wallet_address: str,
    count: int,
    amount: int,
    token: str = "OVPP",  # noqa: S107 (a token symbol, not a secret)
    failed_every: int = 0,
    between: tuple[timedelta, timedelta] = (timedelta(hours=23), timedelta(minutes=1)),
) -> int:
    """Insert ``count`` CONFIRMED transfers of ``amount`` of ``token`` from the wallet, spread
    evenly from ``between[0]`` ago to ``between[1]`` ago (every ``failed_every``-th one FAILED
    instead), after any it has (its running total goes on from there) and before anything it
    sends next. Their forwarder nonces are negative: they hold none the forwarder counts.
    Returns what they sent (the failed ones do not count)."""
    first, last = (utc_now() - ago for ago in between)
    async with db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == wallet_address))
        ).scalar_one()
        key_id = await relayer_key_for(session, wallet.id)
        total = await running_total(session, wallet_id=wallet.id, token=token)
        rows, sent = [], 0
        for index in range(count):
            failed = bool(failed_every) and index % failed_every == failed_every - 1
            total += amount
            sent += 0 if failed else amount
            created = first + (last - first) * index / max(count - 1, 1)
            rows.append(
                _row(wallet, key_id=key_id, index=index, token=token, amount=amount, total=total)
                | {
                    "status": RelayStatus.FAILED if failed else RelayStatus.CONFIRMED,
                    "created_at": created,
                    "updated_at": created,
                }
            )
        for start in range(0, len(rows), CHUNK):
            await session.execute(insert(RelayTransaction.__table__), rows[start : start + CHUNK])
    if not db.is_sqlite:  # the statistics autovacuum would gather after such an insert
        async with db.engine.connect() as connection:
            await connection.exec_driver_sql("ANALYZE relay_transactions")
    return sent


def _row(
    wallet: Wallet, *, key_id: str, index: int, token: str, amount: int, total: int
) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "wallet_id": wallet.id,
        "customer_id": wallet.customer_id,
        "idempotency_key": f"history-{uuid.uuid4()}",
        "request_fingerprint": "0" * 64,
        "kind": JobKind.TRANSFER.value,
        "token": token,
        "token_address": "0x" + "00" * 20,
        "to_address": "0x" + "00" * 19 + "01",
        "amount": amount,
        "fee_token": None,
        "fee_amount": 0,
        "sponsored": False,
        "sponsor_id": None,
        "quote_id": None,
        "running_total": total,
        "forwarder_nonce": -1 - index,
        "forward_requests": [],
        "gas_limit": 130_000,
        "relayer_key_id": key_id,
        "attempts": 0,
    }
