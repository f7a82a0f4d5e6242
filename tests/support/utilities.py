"""A fresh utility (tenant) per test, with its own OpenID issuer: sponsorship state of one
test never leaks into another."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from api.container import Services
from identity.repository import upsert_tenant
from relayer.sponsorship import configure_sponsor
from tests.support.issuer import TEST_CLIENT_ID, TestIssuer


@asynccontextmanager
async def fresh_utility(
    services: Services, *, audience: str, sponsor_funds_wei: int | None = None, **caps: int
) -> AsyncIterator[tuple[TestIssuer, str]]:
    """Yields (issuer, tenant_id); its admins sign in with the test client. With
    ``sponsor_funds_wei`` the utility sponsors gas."""
    issuer = TestIssuer(audience=audience)
    issuer.start()
    slug = f"utility-{uuid.uuid4().hex[:10]}"
    try:
        async with services.db.session() as session:
            tenant = await upsert_tenant(
                session,
                slug=slug,
                name=f"Utility {slug}",
                issuer=issuer.issuer,
                audience=audience,
                admin_client_ids=[TEST_CLIENT_ID],
            )
            if sponsor_funds_wei is not None:
                await configure_sponsor(
                    session,
                    tenant_id=tenant.id,
                    name=f"{slug} sponsorship",
                    add_funds_wei=sponsor_funds_wei,
                    **caps,
                )
        services.token_validator.issuers.invalidate()
        yield issuer, tenant.id
    finally:
        issuer.stop()
