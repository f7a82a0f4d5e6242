"""The hold on tokens bought by card (review H6; docs/onramp.md, "Hold and limits").

For ``OVPP_ONRAMP_HOLD_HOURS`` after a card purchase is delivered, its tokens may pay fees and
go to this backend's own wallets, but not to any other address: a chargeback that comes days
later still finds them. The rule is the simplest that is never short: what a wallet holds of a
token is the sum of its card purchases delivered within the window (and of those being
delivered): spending some on fees does not shorten the hold on the rest. The relayer
enforces it (``relayer.hold``) through ``services.held_funds``, which ``api.container`` fills
with ``card_hold`` wrapped in ``relayer.hold.following_tokens``: a hold moves with held tokens
to another of this backend's wallets."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import utc_now
from core.settings import Settings
from onramp import repository
from relayer.deps import HeldAmount, HeldFunds


def card_hold(settings: Settings) -> HeldFunds:
    """``services.held_funds``: one ``HeldAmount`` per card purchase still held, each until
    its delivery plus the hold (a delivery in flight: from now)."""
    window = timedelta(hours=settings.onramp_hold_hours)

    async def held_funds(
        session: AsyncSession, *, customer_id: str, wallet_id: str
    ) -> list[HeldAmount]:
        if not window:
            return []
        now = utc_now()
        rows = await repository.held_purchases(
            session, customer_id=customer_id, wallet_id=wallet_id, delivered_since=now - window
        )
        held = [
            HeldAmount(token=token, amount=amount, until=(delivered_at or now) + window)
            for token, amount, delivered_at in rows
        ]
        return sorted(held, key=lambda item: (item.until, item.token))

    return held_funds
