"""Identity logic: trusted utilities, and customers provisioned on first sign-in."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import TTLCache

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


class AccountCache:
    """Recently provisioned accounts per (utility, subject), so a signed-in customer's requests
    do not each open a session to look the same rows up again. Entries live ``ttl_seconds``;
    the rows they hold are only read (nonces and balances are never taken from them)."""

    def __init__(self, *, ttl_seconds: float = 60.0, max_entries: int = 10_000) -> None:
        self._entries: TTLCache[tuple[str, str], CustomerAccount] = TTLCache(
            maxsize=max_entries, ttl=ttl_seconds
        )

    def get(self, principal: Principal) -> CustomerAccount | None:
        account = self._entries.get((principal.tenant_id, principal.subject))
        if account is None:
            return None
        if principal.email and account.customer.email != principal.email:
            return None  # let provisioning record the new email
        return account

    def put(self, principal: Principal, account: CustomerAccount) -> None:
        self._entries[(principal.tenant_id, principal.subject)] = account


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
