"""Every table of every domain, imported in one place for Alembic and the tests."""

from __future__ import annotations

from sqlmodel import SQLModel

from identity.models import Customer, Tenant
from relayer.models import (
    FeeQuote,
    RelayAttempt,
    RelayerKey,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
    WalletPolicy,
)
from wallet.models import Wallet

metadata = SQLModel.metadata

__all__ = [
    "Customer",
    "FeeQuote",
    "RelayAttempt",
    "RelayTransaction",
    "RelayerKey",
    "Sponsor",
    "SponsorCharge",
    "Tenant",
    "Wallet",
    "WalletPolicy",
    "metadata",
]
