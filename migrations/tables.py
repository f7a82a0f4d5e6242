"""The table registry: every domain's tables, imported in one place for Alembic and the tests."""

from __future__ import annotations

from sqlmodel import SQLModel

from identity.models import Customer, Tenant
from onramp.models import OnrampPayment, OnrampQuote, StripeEvent
from programs.models import Device, Enrollment, Program, RegistryChange, UtilityAccount
from programs.vtn.models import DeviceReading, DrEvent, EventDelivery, ReportStream, Ven
from relayer.models import (
    FeeQuote,
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
    "DeviceReading",
    "DrEvent",
    "Enrollment",
    "EventDelivery",
    "FeeQuote",
    "OnrampPayment",
    "OnrampQuote",
    "Program",
    "RegistryChange",
    "RelayAttempt",
    "RelayTransaction",
    "RelayerKey",
    "ReportStream",
    "Sponsor",
    "SponsorCharge",
    "SponsorCustomerDay",
    "SponsorFunding",
    "StripeEvent",
    "Tenant",
    "UtilityAccount",
    "Ven",
    "Wallet",
    "WalletPolicy",
    "metadata",
]
