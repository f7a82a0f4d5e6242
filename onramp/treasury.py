"""The onramp treasury: the custodial wallet of the system tenant that delivers what was bought
by card."""

from __future__ import annotations

from identity import repository as identity_repository
from identity.principal import Principal
from identity.service import CustomerAccount, provision
from onramp.deps import OnrampServices

# The system tenant that owns the onramp treasury wallet. Its issuer is a URN, which no access
# token can ever be validated against (there is no discovery document behind it).
PLATFORM_TENANT_SLUG = "ovpp-platform"
PLATFORM_ISSUER = "urn:ovpp:platform"
TREASURY_SUBJECT = "onramp-treasury"


async def treasury_account(services: OnrampServices) -> CustomerAccount:
    """The onramp treasury: a custodial wallet of the system tenant, created once."""
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
    return await provision(
        services.db,
        principal=Principal(
            tenant_id=tenant.id,
            tenant_slug=tenant.slug,
            issuer=tenant.issuer,
            subject=TREASURY_SUBJECT,
            email=None,
            client_id=None,
            scopes=frozenset(),
        ),
        keyring=services.keyring,
    )
