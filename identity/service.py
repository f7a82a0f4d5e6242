"""Identity logic: trusted utilities, and customers provisioned on first sign-in."""

from __future__ import annotations

from dataclasses import dataclass

from core.db import Database
from core.settings import Settings
from identity import repository
from identity.models import Customer
from identity.principal import Principal
from identity.tokens import TrustedIssuer
from wallet.kms import KeyRing
from wallet.models import Wallet
from wallet.service import ensure_wallet

DEV_TENANT_SLUG = "demo-utility"


@dataclass(frozen=True)
class CustomerAccount:
    customer: Customer
    wallet: Wallet


async def provision(db: Database, *, principal: Principal, keyring: KeyRing) -> CustomerAccount:
    """The caller's customer row and wallet, created exactly once even when first requests race.

    Runs in its own short transaction so the rows exist before the request's own work starts.
    """
    async with db.session() as session:
        customer = await repository.customer_by_subject(
            session, tenant_id=principal.tenant_id, subject=principal.subject
        )
        if customer is None:
            await repository.insert_customer_if_absent(
                session,
                tenant_id=principal.tenant_id,
                subject=principal.subject,
                email=principal.email,
            )
            customer = await repository.customer_by_subject(
                session, tenant_id=principal.tenant_id, subject=principal.subject
            )
            assert customer is not None
        elif principal.email and customer.email != principal.email:
            customer.email = principal.email
            session.add(customer)
        wallet = await ensure_wallet(session, customer_id=customer.id, keyring=keyring)
        return CustomerAccount(customer=customer, wallet=wallet)


async def sync_tenants(db: Database, settings: Settings) -> None:
    """Upsert the configured utilities (and, in development, the embedded provider's)."""
    tenants = list(settings.tenants)
    if settings.is_development and not any(t.slug == DEV_TENANT_SLUG for t in tenants):
        from core.settings import TenantConfig

        tenants.append(
            TenantConfig(
                slug=DEV_TENANT_SLUG,
                name="Demo Utility (development sign-in)",
                issuer=settings.dev_issuer,
                audience=settings.dev_audience,
            )
        )
    async with db.session() as session:
        for tenant in tenants:
            await repository.upsert_tenant(
                session,
                slug=tenant.slug,
                name=tenant.name,
                issuer=tenant.issuer,
                audience=tenant.audience,
            )


async def trusted_issuers(db: Database) -> list[TrustedIssuer]:
    async with db.session() as session:
        return [
            TrustedIssuer(tenant.id, tenant.slug, tenant.issuer, tenant.audience)
            for tenant in await repository.all_tenants(session)
        ]
