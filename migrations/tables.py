"""The table registry: every domain's tables, imported in one place for Alembic and the tests."""

from __future__ import annotations

from sqlmodel import SQLModel

from identity.models import Customer, Tenant
from indexer.models import IndexedBlock, IndexerCursor, TokenTransfer, WalletBalance
from onramp.models import OnrampPayment, OnrampQuote, StripeEvent
from programs.models import Device, Enrollment, Program, RegistryChange, UtilityAccount
from relayer.models import (
    FeeQuote,
    MovedHold,
    RelayAttempt,
    RelayerKey,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
    SponsorCustomerDay,
    SponsorFunding,
    WalletPolicy,
)
from wallet.models import Wallet

metadata = SQLModel.metadata

__all__ = [
    "Customer",
    "Device",
    "Enrollment",
    "FeeQuote",
    "IndexedBlock",
    "IndexerCursor",
    "MovedHold",
    "OnrampPayment",
    "OnrampQuote",
    "Program",
    "RegistryChange",
    "RelayAttempt",
    "RelayTransaction",
    "RelayerKey",
    "Sponsor",
    "SponsorCharge",
    "SponsorCustomerDay",
    "SponsorFunding",
    "StripeEvent",
    "Tenant",
    "TokenTransfer",
    "UtilityAccount",
    "Wallet",
    "WalletBalance",
    "WalletPolicy",
    "metadata",
]
