"""The utility administrator's API: each utility sees and changes only its own programs,
enrollments and sponsorship budget."""

from __future__ import annotations

import uuid

from api.container import Services
from programs.models import Program
from programs.registry import registry_of
from registry_client.onchain import program_id_of, utility_id_of
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.registry_changes import admin_change

REGISTERED = "slug registered country region postalCodes controlEndpoints { protocol endpoint }"
REGISTER = (
    "mutation($input: RegisterUtilityInput!) { registerUtility(input: $input) { "
    + REGISTERED
    + " } }"
)
UPSERT = """
mutation($input: UpsertProgramInput!) {
  upsertProgram(input: $input) { id externalId name connectionFee feePayer active }
}
"""
VIEW = """
query { utilityAdmin { slug programs { id externalId name activeEnrollments }
  sponsorBudget { active funds spent remaining } } }
"""
FUND = """
mutation($input: FundSponsorshipInput!) {
  fundSponsorship(input: $input) {
    __typename ... on SponsorBudget { funds remaining active } ... on InsufficientFunds { message }
  }
}
"""


def program_input(external_id: str, name: str, fee: str) -> dict:
    return {
        "externalId": external_id,
        "name": name,
        "description": "peak shaving",
        "feePayer": "CUSTOMER",
        "connectionFee": fee,
        "protocols": ["OPENADR_3"],
        "eligibleDeviceTypes": ["BATTERY"],
    }


async def register(client, token: str, region: str, postal: str) -> dict:
    await admin_change(
        client,
        REGISTER,
        {
            "input": {
                "country": "US",
                "region": region,
                "postalCodes": [postal],
                "controlEndpoints": [
                    {"protocol": "OPENADR_3", "endpoint": f"https://vtn.{region.lower()}.example"}
                ],
            }
        },
        token=token,
    )
    view = await gql(client, "query { utilityAdmin { " + REGISTERED + " } }", token=token)
    return view["data"]["utilityAdmin"]


async def test_one_utility_cannot_read_or_change_another_utilitys_programs_enrollments_or_budget(
    client,
    relayer,
    registry_demo,
    services: Services,
    test_issuer: TestIssuer,
    other_issuer: TestIssuer,
) -> None:
    admin_a = test_issuer.mint(sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin")
    admin_b = other_issuer.mint(sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin")
    a = await register(client, admin_a, "US-NY", "10001-10010")
    b = await register(client, admin_b, "US-TX", "73301")
    assert a["registered"] and a["slug"] == "test-utility"
    assert b["controlEndpoints"] == [
        {"protocol": "OPENADR_3", "endpoint": "https://vtn.us-tx.example"}
    ]

    external = f"dr-{uuid.uuid4().hex[:6]}"
    program_a = (
        await admin_change(
            client, UPSERT, {"input": program_input(external, "A's program", "2")}, token=admin_a
        )
    )["data"]["upsertProgram"]
    body = await admin_change(
        client, UPSERT, {"input": program_input(external, "B's program", "9")}, token=admin_b
    )
    program_b = body["data"]["upsertProgram"]
    assert program_b["id"] != program_a["id"], "the same external id at B is B's own program"

    view_a = (await gql(client, VIEW, token=admin_a))["data"]["utilityAdmin"]
    view_b = (await gql(client, VIEW, token=admin_b))["data"]["utilityAdmin"]
    assert program_a["id"] in {p["id"] for p in view_a["programs"]}
    assert program_a["id"] not in {p["id"] for p in view_b["programs"]}
    assert program_b["id"] not in {p["id"] for p in view_a["programs"]}

    peek = await gql(
        client,
        "query($p: ID!) { utilityAdmin { enrollments(programId: $p) { id } } }",
        {"p": program_a["id"]},
        token=admin_b,
    )
    assert error_codes(peek) == ["FORBIDDEN"]

    # A's program is untouched by B's upsert, in the catalog and on chain.
    async with services.db.session() as session:
        row = await session.get(Program, program_a["id"])
    assert row.name == "A's program" and row.connection_fee == 2 * 10**18
    record = await registry_of(services.chain).program(
        program_id_of(utility_id_of("test-utility"), external)
    )
    assert record is not None and record.connection_fee == 2 * 10**18

    key = f"fund-{uuid.uuid4()}"
    before_a = view_a["sponsorBudget"]["funds"]
    funded = await gql(
        client, FUND, {"input": {"amount": "0.5", "idempotencyKey": key}}, token=admin_b
    )
    again = await gql(
        client, FUND, {"input": {"amount": "0.5", "idempotencyKey": key}}, token=admin_b
    )
    # B's own wallet pays (or holds too little): A's budget is not B's to fund or touch.
    assert "errors" not in funded and "errors" not in again, (funded, again)
    assert (
        again["data"]["fundSponsorship"]["__typename"]
        == (funded["data"]["fundSponsorship"]["__typename"])
    )
    after_a = (await gql(client, VIEW, token=admin_a))["data"]["utilityAdmin"]["sponsorBudget"][
        "funds"
    ]
    assert after_a == before_a


async def test_admin_operations_need_the_admin_scope(client, test_issuer: TestIssuer) -> None:
    customer = test_issuer.mint(scope="wallet:read wallet:sign")
    assert error_codes(await gql(client, VIEW, token=customer)) == ["FORBIDDEN"]
    body = await gql(client, UPSERT, {"input": program_input("x", "x", "1")}, token=customer)
    assert error_codes(body) == ["FORBIDDEN"]
    body = await gql(
        client, FUND, {"input": {"amount": "1", "idempotencyKey": "k"}}, token=customer
    )
    assert error_codes(body) == ["FORBIDDEN"]
