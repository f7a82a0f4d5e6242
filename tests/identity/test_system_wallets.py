"""System wallets (each utility's registry and sponsor wallet, the onramp treasury) belong to no
token: they are ``SYSTEM`` customers, and a sign-in only ever finds a ``CUSTOMER``.

A token whose subject is a system wallet's name (``utility-account:<slug>``,
``onramp-treasury``) signs in as a person of its own: a fresh wallet, never the system one,
whether it signs in after the system wallet exists or before (onboarding then creates the
utility's wallet beside it instead of adopting the person's).
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from api.container import Services
from identity.models import Customer, CustomerKind
from onramp.treasury import PLATFORM_ISSUER, TREASURY_SUBJECT, treasury_account
from programs.admin import tenant_by_slug, utility_wallet
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.rows import tenant_slug
from tests.support.utilities import fresh_utility
from wallet.models import Wallet

VIEWER = "query { viewer { id wallet { address } } }"
SIGNING = "wallet:read wallet:sign"


async def kinds_of(services: Services, subject: str) -> dict[str, str]:
    """customer kind → wallet address, for every row named ``subject``."""
    async with services.db.session() as session:
        rows = await session.execute(
            select(Customer.kind, Wallet.address)
            .join(Wallet, Wallet.customer_id == Customer.id)
            .where(Customer.subject == subject)
        )
        return {kind: address for kind, address in rows.all()}


async def viewer_address(client, token: str) -> str:
    body = await gql(client, VIEWER, token=token)
    assert "errors" not in body, body
    return body["data"]["viewer"]["wallet"]["address"]


async def test_a_subject_named_like_the_utility_wallet_gets_a_wallet_of_its_own(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    tenant = await tenant_by_slug(services, "test-utility")
    utility = await utility_wallet(services, tenant)
    subject = f"utility-account:{tenant.slug}"

    address = await viewer_address(client, test_issuer.mint(sub=subject, scope=SIGNING))

    assert address != utility.address
    assert (await utility_wallet(services, tenant)).address == utility.address
    assert await kinds_of(services, subject) == {
        CustomerKind.SYSTEM: utility.address,
        CustomerKind.CUSTOMER: address,
    }


async def test_a_person_signed_in_before_onboarding_is_not_adopted_as_the_utility_wallet(
    client, services: Services
) -> None:
    async with fresh_utility(services, audience="https://early.example") as (issuer, tenant_id):
        slug = await tenant_slug(services.db, tenant_id)
        token = issuer.mint(sub=f"utility-account:{slug}", scope=SIGNING)
        early = await viewer_address(client, token)

        utility = await utility_wallet(services, await tenant_by_slug(services, slug))

        assert utility.address != early
        assert await viewer_address(client, token) == early


async def test_the_onramp_treasury_is_no_ones_sign_in(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    treasury = (await treasury_account(services)).wallet

    # the treasury's name as a subject of a trusted utility: a person of that utility
    address = await viewer_address(client, test_issuer.mint(sub=TREASURY_SUBJECT, scope=SIGNING))
    assert address != treasury.address

    # the system tenant's own issuer: no token is ever validated against it
    platform = test_issuer.mint(
        iss=PLATFORM_ISSUER, aud=PLATFORM_ISSUER, sub=TREASURY_SUBJECT, scope=SIGNING
    )
    body = await gql(client, VIEWER, token=platform)
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    assert (await treasury_account(services)).wallet.address == treasury.address


@pytest.mark.parametrize("subject", ["utility-account:other-utility", TREASURY_SUBJECT])
async def test_no_issuer_signs_in_as_a_system_wallet(
    client, services: Services, other_issuer: TestIssuer, subject: str
) -> None:
    system = {
        (await utility_wallet(services, await tenant_by_slug(services, "other-utility"))).address,
        (await treasury_account(services)).wallet.address,
    }

    address = await viewer_address(client, other_issuer.mint(sub=subject, scope=SIGNING))

    assert address not in system
