"""The onramp treasury: the custodial wallet of the system tenant that delivers what was bought
by card."""

from __future__ import annotations

from identity.service import PLATFORM_ISSUER, CustomerAccount, platform_account
from onramp.deps import OnrampServices

__all__ = ["PLATFORM_ISSUER", "TREASURY_SUBJECT", "treasury_account"]

# A SYSTEM customer of the platform tenant, which no sign-in ever finds.
TREASURY_SUBJECT = "onramp-treasury"


async def treasury_account(services: OnrampServices) -> CustomerAccount:
    """The onramp treasury: a system wallet of the system tenant, created once."""
    return await platform_account(services.db, name=TREASURY_SUBJECT, keyring=services.keyring)
