"""First sign-in provisions one customer and one wallet, exactly once, per person per utility.

A person is the pair (issuer, ``sub``): the email may change, the wallet must not; the same
``sub`` at two utilities is two people.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from api.container import Services
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.rows import customers_with_subject, tenant_slug, wallets_of_subject

VIEWER = "query { viewer { id email wallet { address } } }"


def fresh_subject(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize("concurrent_requests", [2, 10])
async def test_concurrent_first_requests_provision_exactly_one_customer_and_wallet(
    client, services: Services, test_issuer: TestIssuer, concurrent_requests: int
) -> None:
    subject = fresh_subject("racer")
    token = test_issuer.mint(sub=subject, email="racer@example.com")

    bodies = await asyncio.gather(
        *(gql(client, VIEWER, token=token) for _ in range(concurrent_requests))
    )

    assert all("errors" not in body for body in bodies), bodies
    viewers = [body["data"]["viewer"] for body in bodies]
    assert len({viewer["id"] for viewer in viewers}) == 1
    assert len({viewer["wallet"]["address"] for viewer in viewers}) == 1
    [customer] = await customers_with_subject(services.db, subject)
    [wallet] = await wallets_of_subject(services.db, subject)
    assert viewers[0]["id"] == customer.id
    assert viewers[0]["wallet"]["address"] == wallet.address


async def test_a_changed_email_is_updated_and_the_wallet_is_kept(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = fresh_subject("moved")
    before = await gql(
        client, VIEWER, token=test_issuer.mint(sub=subject, email="old-address@example.com")
    )
    after = await gql(
        client, VIEWER, token=test_issuer.mint(sub=subject, email="new-address@example.com")
    )

    assert "errors" not in before and "errors" not in after, (before, after)
    assert after["data"]["viewer"]["email"] == "new-address@example.com"
    assert after["data"]["viewer"]["id"] == before["data"]["viewer"]["id"]
    assert after["data"]["viewer"]["wallet"] == before["data"]["viewer"]["wallet"]
    [customer] = await customers_with_subject(services.db, subject)
    assert customer.email == "new-address@example.com"
    [wallet] = await wallets_of_subject(services.db, subject)
    assert wallet.address == before["data"]["viewer"]["wallet"]["address"]


async def test_the_same_sub_at_two_utilities_is_two_customers_with_two_wallets(
    client, services: Services, test_issuer: TestIssuer, other_issuer: TestIssuer
) -> None:
    shared_subject = fresh_subject("shared")
    at_test_utility = await gql(
        client, VIEWER, token=test_issuer.mint(sub=shared_subject, email="a@test-utility.example")
    )
    at_other_utility = await gql(
        client, VIEWER, token=other_issuer.mint(sub=shared_subject, email="b@other.example")
    )

    assert "errors" not in at_test_utility and "errors" not in at_other_utility
    first = at_test_utility["data"]["viewer"]
    second = at_other_utility["data"]["viewer"]
    assert first["id"] != second["id"]
    assert first["wallet"]["address"] != second["wallet"]["address"]
    assert (first["email"], second["email"]) == ("a@test-utility.example", "b@other.example")
    customers = await customers_with_subject(services.db, shared_subject)
    slug_by_customer = {
        customer.id: await tenant_slug(services.db, customer.tenant_id) for customer in customers
    }
    assert slug_by_customer == {first["id"]: "test-utility", second["id"]: "other-utility"}
    wallets = await wallets_of_subject(services.db, shared_subject)
    assert {wallet.address for wallet in wallets} == {
        first["wallet"]["address"],
        second["wallet"]["address"],
    }
