"""Site addresses from clients: ``addDevice`` refuses each bad field by name and stores nothing,
no routing input produces a 500, and registering a device needs the write scope."""

from __future__ import annotations

import uuid

import pytest
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from programs.models import Device
from tests.support.enrollment import ADD_DEVICE, SITE
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.wallets import new_customer

PROGRAMS = """
query($site: SiteAddressInput!) { programs(siteAddress: $site) { id name } }
"""


async def device_count(services: Services) -> int:
    async with services.db.session() as session:
        return int((await session.execute(select(func.count()).select_from(Device))).scalar_one())


async def add(client, token: str, site: dict) -> dict:  # type: ignore[no-untyped-def]
    body = await gql(
        client,
        ADD_DEVICE,
        {
            "input": {
                "make": "Voltstack",
                "model": "VS-13.5",
                "serial": f"SN-{uuid.uuid4().hex[:10]}",
                "siteAddress": site,
            }
        },
        token=token,
    )
    assert "errors" not in body, body
    return body["data"]["addDevice"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("postalCode", "9410\u00b2"),  # a superscript two: str.isdigit says yes, int() says no
        ("postalCode", "\u0669\u0664\u0661\u0660\u0665"),  # Arabic-Indic digits
        ("postalCode", "941\n05"),
        ("postalCode", "9" * 21),
        ("postalCode", " "),
        ("line1", "1 Market St\x00"),
        ("line1", "1 Market St\u202e"),  # a right-to-left override
        ("line1", "x" * 201),
        ("line1", "   "),
        ("city", "San\tFrancisco"),
        ("city", "y" * 101),
        ("region", "CALIFORNIA-NORTH"),
        ("region", "C\u0391"),  # a Greek capital alpha
        ("region", ""),
        ("country", "USA"),
        ("country", "\u00dcS"),
        ("country", "U1"),
    ],
)
async def test_add_device_names_the_bad_site_field_and_stores_nothing(
    client,
    registry_demo,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    field: str,
    value: str,
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    before = await device_count(services)

    result = await add(client, customer.token, {**SITE, field: value})

    assert result["__typename"] == "InvalidInput", result
    assert result["field"] == f"siteAddress.{field}"
    assert await device_count(services) == before


async def test_addresses_of_other_countries_are_accepted(
    client, registry_demo, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    for site in (
        {"line1": "Straße des 17. Juni 1", "city": "Berlin", "region": "BE",
         "postalCode": "10623", "country": "de"},
        {"line1": "10 Downing St", "city": "London", "region": "GB-LND",
         "postalCode": "SW1A 2AA", "country": "GB"},
        {**SITE, "postalCode": "94105-1234", "region": "US-CA"},
    ):  # fmt: skip
        assert (await add(client, customer.token, site))["__typename"] == "Device", site


@pytest.mark.parametrize(
    "postal_code", ["9410\u00b2", "\u0669\u0664\u0661\u0660\u0665", "9" * 5000]
)
async def test_programs_at_a_site_no_range_can_hold_is_empty_not_an_error(
    client, registry_demo, postal_code: str
) -> None:
    # The demo utility serves 94102-94110: the codes above are numbers to str.isdigit only.
    body = await gql(client, PROGRAMS, {"site": {**SITE, "postalCode": postal_code}})

    assert body == {"data": {"programs": []}}


async def test_add_device_needs_the_write_scope(
    client,
    registry_demo,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    reader = await new_customer(client, test_issuer, deployer, contracts, scope="wallet:read")
    before = await device_count(services)

    body = await gql(
        client,
        ADD_DEVICE,
        {
            "input": {
                "make": "Voltstack",
                "model": "VS-13.5",
                "serial": "SN-read",
                "siteAddress": SITE,
            }
        },
        token=reader.token,
    )

    assert error_codes(body) == ["FORBIDDEN"]
    assert await device_count(services) == before
