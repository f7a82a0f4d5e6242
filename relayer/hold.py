"""The card onramp's hold at the relayer's door (docs/onramp.md, "Hold and limits"): a
transfer to an address outside this backend's wallets may spend only what is not held. Fees,
enrollments and transfers to this backend's own wallets are not limited. What is held comes
from ``services.held_funds`` (the onramp fills it in; the relayer never imports the onramp)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import TokenInfo, format_units
from core.db import utc_now
from identity.service import CustomerAccount
from relayer.deps import HeldAmount, RelayerServices
from relayer.errors import PolicyViolation
from wallet.models import Wallet

ONRAMP_HOLD = "ONRAMP_HOLD"


async def binding_holds(
    session: AsyncSession,
    *,
    services: RelayerServices,
    account: CustomerAccount,
    token: TokenInfo,
    to: str,
) -> list[HeldAmount]:
    """The holds on ``token`` in the account's wallet that bind a transfer to ``to``: none
    when ``to`` is one of this backend's wallets (the tokens stay within reach)."""
    now = utc_now()
    held = [
        item
        for item in await services.held_funds(
            session, customer_id=account.customer.id, wallet_id=account.wallet.id
        )
        if item.token == token.kind.value and item.until > now and item.amount > 0
    ]
    if not held or await _is_own_wallet(session, to):
        return []
    return held


async def _is_own_wallet(session: AsyncSession, address: str) -> bool:
    statement = select(Wallet.id).where(Wallet.address == address).limit(1)
    return (await session.execute(statement)).first() is not None


def free_at(held: list[HeldAmount], *, amount: int, spendable: int) -> datetime | None:
    """``None`` when ``amount`` fits in what ``spendable`` leaves beside ``held``; otherwise
    the earliest moment enough of the hold has ended for it to fit."""
    free = spendable - sum(item.amount for item in held)
    if amount <= free:
        return None
    ordered = sorted(held, key=lambda item: item.until)
    for item in ordered:
        free += item.amount
        if amount <= free:
            return item.until
    return ordered[-1].until


def refuse_held(
    held: list[HeldAmount], *, token: TokenInfo, amount: int, spendable: dict[str, int]
) -> None:
    """``PolicyViolation`` (rule ``ONRAMP_HOLD``, the end of the hold in its message) unless
    ``amount`` of ``token`` can leave without touching ``held``."""
    available = spendable.get(token.kind.value, 0)
    until = free_at(held, amount=amount, spendable=available)
    if until is None:
        return
    total = sum(item.amount for item in held)
    free_now = max(available - total, 0)
    raise PolicyViolation(
        f"{format_units(total, token.decimals)} {token.symbol} of this wallet was bought by card "
        f"and is held: this transfer can be sent once the hold ends at {_moment(until)}; until "
        f"then at most {format_units(free_now, token.decimals)} {token.symbol} can go to an "
        "address outside this service (fees, enrollments and transfers to this service's "
        "wallets are not limited)",
        rule=ONRAMP_HOLD,
    )


def _moment(when: datetime) -> str:
    """``when`` in UTC to the second, rounded up: the hold has ended by the moment shown."""
    when = when.astimezone(UTC)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
