"""Identity logic: trusted utilities, and customers provisioned on first sign-in."""

from __future__ import annotations

from dataclasses import dataclass

from cachetools import TTLCache

from core.db import Database
from core.defaults import DEV_OIDC_CLIENT_ID, DEV_TENANT_SLUG, SYSTEM_ISSUER_PREFIX
from core.settings import Settings
from core.tenant_config import PLATFORM_TENANT_SLUG, TenantConfig
from identity import repository
from identity.models import Customer, CustomerKind
from identity.principal import Principal
from identity.tokens import TrustedIssuer
from wallet.kms import KeyRing
from wallet.models import Wallet
from wallet.service import ensure_wallet

__all__ = ["DEV_TENANT_SLUG", "AccountCache", "CustomerAccount", "provision", "system_account"]


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
    """The signed-in customer's row and wallet, created exactly once even when first requests
    race. Only ever a ``CUSTOMER``: a token's subject never finds a system wallet, whatever it
    is (a subject equal to a system wallet's name gets a customer wallet of its own).

    Runs in its own short transaction so the rows exist before the request's own work starts.
    """
    return await _account(
        db,
        tenant_id=principal.tenant_id,
        subject=principal.subject,
        email=principal.email,
        kind=CustomerKind.CUSTOMER,
        keyring=keyring,
    )


async def system_account(
    db: Database, *, tenant_id: str, name: str, keyring: KeyRing
) -> CustomerAccount:
    """A system wallet of ``tenant_id`` (a utility's own wallet, the onramp treasury), known by
    ``name``, created once. No access token ever signs in as it."""
    return await _account(
        db, tenant_id=tenant_id, subject=name, email=None, kind=CustomerKind.SYSTEM, keyring=keyring
    )


PLATFORM_ISSUER = "urn:ovpp:platform"
"""The system tenant's issuer: a URN, which no access token can ever be validated against (the
issuer directory skips it, and there is no discovery document behind it)."""


async def platform_account(db: Database, *, name: str, keyring: KeyRing) -> CustomerAccount:
    """A system wallet of the platform's own tenant (the onramp treasury, the registry's
    registrar), known by ``name``, created once."""
    async with db.session() as session:
        tenant = await repository.tenant_by_issuer(session, PLATFORM_ISSUER)
        if tenant is None:
            tenant = await repository.upsert_tenant(
                session,
                slug=PLATFORM_TENANT_SLUG,
                name="OpenVPP platform (system)",
                issuer=PLATFORM_ISSUER,
                audience=PLATFORM_ISSUER,
            )
    return await system_account(db, tenant_id=tenant.id, name=name, keyring=keyring)


async def _account(
    db: Database,
    *,
    tenant_id: str,
    subject: str,
    email: str | None,
    kind: CustomerKind,
    keyring: KeyRing,
) -> CustomerAccount:
    async with db.session() as session:
        found = {"session": session, "tenant_id": tenant_id, "subject": subject, "kind": kind}
        customer = await repository.customer_by_subject(**found)
        if customer is None:
            await repository.insert_customer_if_absent(
                session, tenant_id=tenant_id, subject=subject, email=email, kind=kind
            )
            customer = await repository.customer_by_subject(**found)
            assert customer is not None
        elif email and customer.email != email:
            customer.email = email
            session.add(customer)
        wallet = await ensure_wallet(session, customer_id=customer.id, keyring=keyring)
        return CustomerAccount(customer=customer, wallet=wallet)


def configured_tenants(settings: Settings) -> list[TenantConfig]:
    """The utilities the configuration trusts: OVPP_TENANTS, and in development (only) the
    embedded provider's, whose one client administers it."""
    tenants = list(settings.tenants)
    if settings.is_development and not any(t.slug == DEV_TENANT_SLUG for t in tenants):
        tenants.append(
            TenantConfig(
                slug=DEV_TENANT_SLUG,
                name="Demo Utility (development sign-in)",
                issuer=settings.dev_issuer,
                audience=settings.dev_audience,
                admin_client_ids=[DEV_OIDC_CLIENT_ID],
            )
        )
    return tenants


async def sync_tenants(db: Database, settings: Settings) -> None:
    """Trust follows the configuration, at every start: the configured utilities are upserted
    and enabled, every other one is disabled (its rows stay, for history; its tokens are
    refused). System tenants (a URN issuer, no tokens) are left as they are."""
    tenants = configured_tenants(settings)
    async with db.session() as session:
        for tenant in tenants:
            await repository.upsert_tenant(
                session,
                slug=tenant.slug,
                name=tenant.name,
                issuer=tenant.issuer,
                audience=tenant.audience,
                admin_client_ids=tenant.admin_client_ids,
                enabled=True,
            )
        await repository.disable_tenants_except(
            session,
            slugs=[tenant.slug for tenant in tenants],
            issuer_prefix_kept=SYSTEM_ISSUER_PREFIX,
        )


async def trusted_issuers(db: Database) -> list[TrustedIssuer]:
    """The enabled utilities' issuers; a system tenant's URN is no issuer of tokens."""
    async with db.session() as session:
        return [
            TrustedIssuer(
                tenant.id,
                tenant.slug,
                tenant.issuer,
                tenant.audience,
                admin_client_ids=frozenset(tenant.admin_client_ids),
            )
            for tenant in await repository.enabled_tenants(session)
            if not tenant.issuer.startswith(SYSTEM_ISSUER_PREFIX)
        ]
