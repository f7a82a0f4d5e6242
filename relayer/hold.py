"""The card onramp's hold at the relayer's door (docs/onramp.md, "Hold and limits"): a
transfer to an address outside this backend's wallets may spend only what is not held. Fees,
enrollments and transfers to this backend's own wallets are not limited, but the hold follows
the tokens: a transfer to another of this backend's wallets that spends held tokens moves their
hold to the recipient until the same end (``MovedHold``, written with the transfer's job), so a
second wallet is no way out. What is held comes from ``services.held_funds``: the onramp's card
purchases (the relayer never imports the onramp), which ``api.container`` wraps in
``following_tokens`` to add the holds moved in and take away those moved out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import TokenInfo, format_units
from core.db import insert_rows, utc_now
from identity.service import CustomerAccount
from relayer import repository
from relayer.deps import HeldAmount, HeldFunds, RelayerServices
from relayer.errors import PolicyViolation
from relayer.models import MovedHold, RelayTransaction
from wallet.models import Wallet

ONRAMP_HOLD = "ONRAMP_HOLD"


@dataclass(frozen=True)
class TransferHolds:
    """The holds on a transfer's token in the sender's wallet, and the wallet of this backend
    the transfer goes to (``None``: an outside address)."""

    held: list[HeldAmount]
    recipient_wallet_id: str | None

    @property
    def binding(self) -> bool:
        """Whether the holds limit the transfer: its tokens would leave this backend."""
        return bool(self.held) and self.recipient_wallet_id is None


async def transfer_holds(
    session: AsyncSession,
    *,
    services: RelayerServices,
    account: CustomerAccount,
    token: TokenInfo,
    to: str,
) -> TransferHolds:
    """The holds on ``token`` in the account's wallet, and whether ``to`` is one of this
    backend's wallets (looked up only when something is held)."""
    now = utc_now()
    held = [
        item
        for item in await services.held_funds(
            session, customer_id=account.customer.id, wallet_id=account.wallet.id
        )
        if item.token == token.kind.value and item.until > now and item.amount > 0
    ]
    if not held:
        return TransferHolds(held=[], recipient_wallet_id=None)
    return TransferHolds(held=held, recipient_wallet_id=await _own_wallet_id(session, to))


async def _own_wallet_id(session: AsyncSession, address: str) -> str | None:
    statement = select(Wallet.id).where(Wallet.address == address).limit(1)
    return (await session.execute(statement)).scalar_one_or_none()


async def move_with_transfer(
    session: AsyncSession, holds: TransferHolds, *, job: RelayTransaction, spendable: dict[str, int]
) -> None:
    """When ``job`` (a transfer to another wallet of this backend, queued in this transaction)
    spends held tokens, their hold moves with them: the part of its amount that what the sender
    could spend (``spendable``, before the job) beside its holds and the job's fee in that token
    does not cover, taken from the holds that end latest, one ``MovedHold`` per hold."""
    if holds.recipient_wallet_id is None or not holds.held:
        return
    fee = int(job.fee_amount) if job.fee_token == job.token else 0
    held_total = sum(item.amount for item in holds.held)
    free = max(spendable.get(job.token, 0) - fee - held_total, 0)
    to_move = min(int(job.amount) - free, held_total)
    rows = []
    for item in sorted(holds.held, key=lambda item: item.until, reverse=True):
        if to_move <= 0:
            break
        part = min(item.amount, to_move)
        to_move -= part
        rows.append(
            MovedHold(
                relay_transaction_id=job.id,
                from_wallet_id=job.wallet_id,
                to_wallet_id=holds.recipient_wallet_id,
                token=job.token,
                amount=part,
                until=item.until,
            )
        )
    await insert_rows(session, *rows)


def following_tokens(held_funds: HeldFunds) -> HeldFunds:
    """``services.held_funds`` with the holds that moved with tokens: those of ``held_funds``
    (the onramp's card purchases) and those moved into the wallet, less those moved out."""

    async def held(session: AsyncSession, *, customer_id: str, wallet_id: str) -> list[HeldAmount]:
        own = await held_funds(session, customer_id=customer_id, wallet_id=wallet_id)
        moved = await repository.moved_holds_of(session, wallet_id, now=utc_now())
        return net_holds(own, moved, wallet_id=wallet_id)

    return held


def net_holds(
    own: list[HeldAmount], moved: Sequence[Row[Any]], *, wallet_id: str
) -> list[HeldAmount]:
    """``own`` and the holds moved into ``wallet_id``, less those moved out of it: each taken
    from the same token's hold that ends soonest at or after it (the one it was taken from),
    then from the latest; never below zero. Soonest free first."""
    entries = [[item.token, item.amount, item.until] for item in own]
    entries += [
        [row.token, int(row.amount), row.until] for row in moved if row.to_wallet_id == wallet_id
    ]
    for out in sorted(
        (row for row in moved if row.from_wallet_id == wallet_id), key=lambda row: row.until
    ):
        same = [entry for entry in entries if entry[0] == out.token]
        later = sorted((e for e in same if e[2] >= out.until), key=lambda e: e[2])
        earlier = sorted((e for e in same if e[2] < out.until), key=lambda e: e[2], reverse=True)
        left = int(out.amount)
        for entry in later + earlier:
            taken = min(entry[1], left)
            entry[1] -= taken
            left -= taken
    held = [HeldAmount(token=t, amount=a, until=u) for t, a, u in entries if a > 0]
    return sorted(held, key=lambda item: (item.until, item.token))


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
        "(here, or in a wallet that sent it here) and is held: this transfer can be sent once "
        f"the hold ends at {_moment(until)}; until then at most "
        f"{format_units(free_now, token.decimals)} {token.symbol} can go to an address outside "
        "this service (fees, enrollments and transfers to this service's wallets are not "
        "limited; what goes to them stays held there until the same end)",
        rule=ONRAMP_HOLD,
    )


def _moment(when: datetime) -> str:
    """``when`` in UTC to the second, rounded up: the hold has ended by the moment shown."""
    when = when.astimezone(UTC)
    if when.microsecond:
        when = when.replace(microsecond=0) + timedelta(seconds=1)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
