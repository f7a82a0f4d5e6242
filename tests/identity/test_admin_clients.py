"""``utility:admin`` is bound to the clients each utility allows for administration
(``TenantConfig.admin_client_ids``): many providers grant any API scope to any client that
asks, so a customer app's token with that scope string alone is refused."""

from __future__ import annotations

import uuid

import pytest

from devsupport.oidc_login import obtain_access_token
from devsupport.oidc_provider import DevOpenIDProvider
from tests.conftest import AUDIENCE, TEST_ADMIN_CLIENT
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer

NO_ENDPOINTS = {"controlEndpoints": []}
ADMIN_VIEW = "query { utilityAdmin { slug } }"
REGISTER = """
mutation($input: RegisterUtilityInput!) { registerUtility(input: $input) { slug } }
"""


def admin_token(issuer: TestIssuer, **client: str | None) -> str:
    return issuer.mint(sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin", **client)


@pytest.mark.parametrize(
    "client_claims",
    [
        {"client_id": "customer-mobile-app"},
        {"client_id": None, "azp": "customer-mobile-app"},
        {"client_id": None},  # no client named at all
        # Two different clients named: which one holds the token cannot be told.
        {"client_id": TEST_ADMIN_CLIENT, "azp": "customer-mobile-app"},
        {"client_id": "customer-mobile-app", "azp": TEST_ADMIN_CLIENT},
    ],
    ids=["client_id", "azp", "none", "admin-client_id-other-azp", "other-client_id-admin-azp"],
)
async def test_the_admin_scope_from_a_customer_client_is_refused(
    client, test_issuer: TestIssuer, client_claims: dict[str, str | None]
) -> None:
    token = admin_token(test_issuer, **client_claims)

    view = await gql(client, ADMIN_VIEW, token=token)
    register = await gql(
        client,
        REGISTER,
        {"input": {"country": "US", "region": "US-NY", "postalCodes": ["10001"], **NO_ENDPOINTS}},
        token=token,
    )

    assert error_codes(view) == ["FORBIDDEN"], view
    assert error_codes(register) == ["FORBIDDEN"], register
    assert "administration clients" in view["errors"][0]["message"]


@pytest.mark.parametrize("naming", [("client_id",), ("azp",), ("client_id", "azp")])
async def test_the_admin_scope_from_an_administration_client_is_accepted(
    client, test_issuer: TestIssuer, other_issuer: TestIssuer, naming: tuple[str, ...]
) -> None:
    claims = {"client_id": None} | dict.fromkeys(naming, TEST_ADMIN_CLIENT)

    mine = await gql(client, ADMIN_VIEW, token=admin_token(test_issuer, **claims))
    theirs = await gql(client, ADMIN_VIEW, token=admin_token(other_issuer, **claims))

    assert mine["data"]["utilityAdmin"]["slug"] == "test-utility", mine
    assert theirs["data"]["utilityAdmin"]["slug"] == "other-utility", theirs


async def test_the_development_client_administers_the_development_utility(
    client, oidc: DevOpenIDProvider
) -> None:
    token = await obtain_access_token(
        issuer=oidc.issuer,
        email="ops@demo-utility.example",
        scope="openid utility:admin",
        resource=AUDIENCE,
    )

    body = await gql(client, ADMIN_VIEW, token=token)

    assert body["data"]["utilityAdmin"]["slug"] == "demo-utility", body
