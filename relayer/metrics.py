"""The relayer's state as an operator watches it, read when metrics are scraped: plain values,
no exposition format (that is the API's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from chain.rpc import JsonRpc
from identity.models import Tenant
from relayer.models import PIPELINE_STATUSES, RelayerKey, RelayStatus, RelayTransaction, Sponsor
from relayer.sponsorship import period_ended

WAITING_STATUSES = PIPELINE_STATUSES
"""Relayed transactions not final yet: the relayer's backlog."""


@dataclass(frozen=True)
class Waiting:
    count: int
    oldest_created_at: datetime | None


@dataclass(frozen=True)
class KeyState:
    address: str
    slot: int
    enabled: bool
    next_nonce: int


@dataclass(frozen=True)
class SponsorState:
    utility: str
    active: bool
    funds_wei: int
    spent_wei: int
    remaining_wei: int
    period_spent_wei: int
    period_cap_wei: int


@dataclass(frozen=True)
class RelayerState:
    waiting: dict[RelayStatus, Waiting]
    """Every status of ``WAITING_STATUSES``, in that order."""
    failed_last_hour: int
    keys: list[KeyState]
    sponsors: list[SponsorState]


@dataclass(frozen=True)
class KeyOnChain:
    address: str
    slot: int
    balance_wei: int | None
    """``None`` when the node's answer was not a quantity."""
    pending_nonce: int | None


async def relayer_state(session: AsyncSession, *, now: datetime) -> RelayerState:
    jobs = (
        await session.execute(
            select(RelayTransaction.status, func.count(), func.min(RelayTransaction.created_at))
            .where(RelayTransaction.status.in_([s.value for s in WAITING_STATUSES]))
            .group_by(RelayTransaction.status)
        )
    ).all()
    failed_last_hour = (
        await session.execute(
            select(func.count()).where(
                RelayTransaction.status == RelayStatus.FAILED.value,
                RelayTransaction.updated_at >= now - timedelta(hours=1),
            )
        )
    ).scalar_one()
    keys = (
        await session.execute(
            select(RelayerKey.address, RelayerKey.slot, RelayerKey.enabled, RelayerKey.next_nonce)
        )
    ).all()
    sponsors = (
        await session.execute(
            select(Tenant.slug, Sponsor).join(Tenant, Tenant.id == Sponsor.tenant_id)
        )
    ).all()
    by_status = {status: Waiting(count, first) for status, count, first in jobs}
    return RelayerState(
        waiting={s: by_status.get(s.value, Waiting(0, None)) for s in WAITING_STATUSES},
        failed_last_hour=failed_last_hour,
        keys=[KeyState(*key) for key in keys],
        sponsors=[_sponsor_state(slug, sponsor) for slug, sponsor in sponsors],
    )


def _sponsor_state(utility: str, sponsor: Sponsor) -> SponsorState:
    return SponsorState(
        utility=utility,
        active=sponsor.active,
        funds_wei=sponsor.funds_wei,
        spent_wei=sponsor.spent_wei,
        remaining_wei=max(sponsor.funds_wei - sponsor.spent_wei, 0),
        # An ended period counts as spent 0 until a reservation rolls the row over.
        period_spent_wei=0 if period_ended(sponsor) else sponsor.period_spent_wei,
        period_cap_wei=sponsor.period_cap_wei,
    )


async def key_slots(session: AsyncSession) -> list[tuple[str, int]]:
    """Every relayer key's address and slot."""
    rows = (await session.execute(select(RelayerKey.address, RelayerKey.slot))).all()
    return [(address, slot) for address, slot in rows]


async def keys_on_chain(rpc: JsonRpc, keys: list[tuple[str, int]]) -> list[KeyOnChain]:
    """Each key's native balance and pending nonce, read in one batch from the node."""
    calls: list[tuple[str, list[Any]]] = []
    for address, _slot in keys:
        calls.append(("eth_getBalance", [address, "latest"]))
        calls.append(("eth_getTransactionCount", [address, "pending"]))
    results = await rpc.batch(calls) if calls else []
    readings = []
    for position, (address, slot) in enumerate(keys):
        wei, pending = results[2 * position : 2 * position + 2]
        readings.append(
            KeyOnChain(
                address=address,
                slot=slot,
                balance_wei=int(wei, 16) if isinstance(wei, str) else None,
                pending_nonce=int(pending, 16) if isinstance(pending, str) else None,
            )
        )
    return readings
