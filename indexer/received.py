"""``activity.received``: what the indexer has just stored for a recipient, told to its
utility's app webhooks (docs/webhooks.md) in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from appwebhooks.models import EventType
from appwebhooks.service import Emission, emit_many
from chain.tokens import TokenInfo, format_units
from indexer import repository


async def emit_activity_received(
    session: AsyncSession,
    *,
    chain_id: int,
    received: Sequence[Row[Any]],
    tokens: Sequence[TokenInfo],
) -> None:
    """One ``activity.received`` per transfer (``repository.MOVED`` columns) just indexed whose
    recipient is a custodial wallet here, for the recipient's utility, deduplicated by the log
    (a range read again after a crash emits nothing new). A reorganisation that drops the
    transfer does not call it back: the feed and the balance correct themselves."""
    if not received:
        return
    tenants = await repository.tenants_of_wallets(session, {row.to_address for row in received})
    by_address = {(token.address or "").lower(): token for token in tokens}
    emissions = []
    for row in received:
        tenant_id = tenants.get(row.to_address)
        token = by_address.get(row.token_address.lower())
        if tenant_id is None or token is None:
            continue
        emissions.append(
            Emission(
                tenant_id,
                EventType.ACTIVITY_RECEIVED,
                {
                    "wallet": row.to_address,
                    "token": {"symbol": token.symbol, "address": token.address},
                    "amount": format_units(int(row.value), token.decimals),
                    "raw": str(int(row.value)),
                    "counterparty": row.from_address,
                    "txHash": row.tx_hash,
                    "logIndex": int(row.log_index),
                    "blockNumber": int(row.block_number),
                    "status": "PENDING",
                },
                dedupe_key=f"activity:{chain_id}:{row.tx_hash}:{int(row.log_index)}",
            )
        )
    await emit_many(session, emissions)
