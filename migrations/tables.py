"""The table registry: every domain's tables, imported in one place for Alembic and the tests."""

from __future__ import annotations

from sqlmodel import SQLModel

from appwebhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from identity.models import Customer, Tenant
from indexer.models import IndexedBlock, IndexerCursor, TokenTransfer, WalletBalance
from onramp.models import OnrampPayment, OnrampQuote, StripeEvent
from programs.models import Device, Enrollment, Program, RegistryChange, UtilityAccount
from programs.rewards.models import ClaimBatch, ContributionRecord, RewardRule, RewardSettlement
from programs.vtn.models import (
    DeviceReading,
    DrEvent,
    EnrollmentPreferences,
    EventDelivery,
    ReportStream,
    Ven,
)
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
    "ClaimBatch",
    "ContributionRecord",
    "Customer",
    "Device",
    "DeviceReading",
    "DrEvent",
    "Enrollment",
    "EnrollmentPreferences",
    "EventDelivery",
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
    "ReportStream",
    "RewardRule",
    "RewardSettlement",
    "Sponsor",
    "SponsorCharge",
    "SponsorCustomerDay",
    "SponsorFunding",
    "StripeEvent",
    "Tenant",
    "TokenTransfer",
    "UtilityAccount",
    "Ven",
    "Wallet",
    "WalletBalance",
    "WalletPolicy",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
    "metadata",
]
