"""The onramp treasury: the custodial wallet of the system tenant that delivers what was bought
by card."""

from __future__ import annotations

from core.tenant_config import PLATFORM_TENANT_SLUG
from identity import repository as identity_repository
from identity.service import CustomerAccount, system_account
from onramp.deps import OnrampServices

# The system tenant that owns the onramp treasury wallet. Its issuer is a URN, which no access
# token can ever be validated against (the issuer directory skips it, and there is no discovery
# document behind it); the treasury is a SYSTEM customer besides, which no sign-in ever finds.
PLATFORM_ISSUER = "urn:ovpp:platform"
TREASURY_SUBJECT = "onramp-treasury"


async def treasury_account(services: OnrampServices) -> CustomerAccount:
    """The onramp treasury: a system wallet of the system tenant, created once."""
    async with services.db.session() as session:
        tenant = await identity_repository.tenant_by_issuer(session, PLATFORM_ISSUER)
        if tenant is None:
            tenant = await identity_repository.upsert_tenant(
                session,
                slug=PLATFORM_TENANT_SLUG,
                name="OpenVPP platform (system)",
                issuer=PLATFORM_ISSUER,
                audience=PLATFORM_ISSUER,
            )
    return await system_account(
        services.db, tenant_id=tenant.id, name=TREASURY_SUBJECT, keyring=services.keyring
    )
