"""What the relayer uses of the process's services. The composition root (``api.container``)
provides them; the relayer never imports it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from chain.client import ChainClient
from core.db import Database
from core.settings import Settings
from relayer.pricing import PriceOracle
from wallet.kms import KeyRing


@dataclass(frozen=True)
class HeldAmount:
    """Tokens in a wallet that may not be sent to an address outside this backend's wallets
    before ``until`` (tokens bought by card, review H6). Fees may still be paid from them."""

    token: str  # a TokenKind value
    amount: int  # base units
    until: datetime


class HeldFunds(Protocol):
    """What of a customer's wallet is held, one entry per reason (the onramp fills this in:
    the relayer sits below it and never imports it)."""

    async def __call__(
        self, session: AsyncSession, *, customer_id: str, wallet_id: str
    ) -> list[HeldAmount]: ...


class RelayerServices(Protocol):
    settings: Settings
    db: Database
    chain: ChainClient
    keyring: KeyRing
    price_oracle: PriceOracle
    treasury_address: str
    forwarder_domain_separator: bytes
    held_funds: HeldFunds
