"""A utility funds its gas sponsorship with real value (review finding H5): ``fundSponsorship``
moves the utility wallet's tokens to the fee treasury on chain, and the funds grow by their
worth in gas only once that transfer is confirmed, once per key. Without the tokens nothing is
queued and nothing is credited: an administrator cannot raise its own limit for free."""

from __future__ import annotations

import uuid
from fractions import Fraction

import pytest
from sqlalchemy import func, select

from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.tokens import TokenKind, format_units
from identity.models import Tenant
from programs.admin import utility_wallet
from relayer.models import JobKind, RelayStatus, RelayTransaction, Sponsor, SponsorFunding
from relayer.worker import RelayerWorker
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.own_stack import OwnStack, tick_until, work_until_final

pytestmark = pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)

OVPP = 10**18
FUND = """
mutation($input: FundSponsorshipInput!) {
  fundSponsorship(input: $input) {
    __typename
    ... on SponsorBudget {
      funds pending remaining
      fundings { source status credit token { symbol } tokenAmount transactionId creditedAt }
    }
    ... on InsufficientFunds { message token { symbol } required available }
    ... on InvalidInput { message field }
  }
}
"""
BUDGET = """
query { utilityAdmin { sponsorBudget { funds pending
  fundings { source status credit operator reference } } } }
"""


def admin_token(issuer: TestIssuer) -> str:
    return issuer.mint(sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin")


async def utility_address(stack: OwnStack) -> str:
    async with stack.services.db.session() as session:
        tenant = (
            await session.execute(select(Tenant).where(Tenant.slug == "test-utility"))
        ).scalar_one()
    return (await utility_wallet(stack.services, tenant)).address


async def fund(stack: OwnStack, admin: str, **fields: str) -> dict:
    body = await gql(stack.client, FUND, {"input": fields}, token=admin)
    assert "errors" not in body, body
    return body["data"]["fundSponsorship"]


async def budget(stack: OwnStack, token: str) -> dict:
    body = await gql(stack.client, BUDGET, token=token)
    assert "errors" not in body, body
    return body["data"]["utilityAdmin"]["sponsorBudget"]


async def worth_in_gas(stack: OwnStack, amount: int, kind: TokenKind) -> int:
    """``amount`` of the token in native wei at the stack's oracle, rounded down."""
    oracle = stack.services.price_oracle
    native, token = await oracle.price(TokenKind.NATIVE), await oracle.price(kind)
    decimals = 6 if kind == TokenKind.STABLECOIN else 18
    wei = Fraction(amount) * token.usd / native.usd * Fraction(10**18, 10**decimals)
    return wei.numerator // wei.denominator


async def rows(stack: OwnStack) -> tuple[int, int, int]:
    """The sponsor's funds (0 without one), its fundings and the funding jobs."""
    async with stack.services.db.session() as session:
        funds = (await session.execute(select(Sponsor.funds_wei))).scalar_one_or_none() or 0
        fundings = (await session.execute(select(func.count(SponsorFunding.id)))).scalar_one()
        jobs = (
            await session.execute(
                select(func.count(RelayTransaction.id)).where(
                    RelayTransaction.kind == JobKind.SPONSOR_FUNDING
                )
            )
        ).scalar_one()
    return int(funds), int(fundings), int(jobs)


async def test_funding_moves_the_utilitys_ovpp_to_the_treasury_and_credits_it_once_confirmed(
    own_stack: OwnStack, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    stack, admin = own_stack, admin_token(test_issuer)
    wallet = await utility_address(stack)
    treasury = stack.settings.treasury_address
    assert treasury is not None
    deployer.mint(token=contracts.ovpp_token, to=wallet, amount=100 * OVPP)
    credit = await worth_in_gas(stack, 10 * OVPP, TokenKind.OVPP)
    assert credit == 4 * 10**16  # 10 OVPP at $0.10 is $1: 0.04 native at $25

    key = f"fund-{uuid.uuid4()}"
    funded = await fund(stack, admin, amount="10", idempotencyKey=key)
    assert funded["__typename"] == "SponsorBudget", funded
    assert (funded["funds"], funded["pending"]) == ("0", format_units(credit, 18))
    [pending] = funded["fundings"]
    assert pending["source"] == "ON_CHAIN" and pending["status"] == "PENDING"
    assert (pending["token"]["symbol"], pending["tokenAmount"]) == ("OVPP", "10")
    assert pending["credit"] == format_units(credit, 18) and pending["creditedAt"] is None
    assert await rows(stack) == (0, 1, 1), "nothing is credited before the transfer confirms"

    await work_until_final(stack)
    async with stack.services.db.session() as session:
        job = await session.get_one(RelayTransaction, pending["transactionId"])
    assert job.status == RelayStatus.CONFIRMED and job.fee_token == "OVPP" and job.fee_amount > 0
    # The tokens are on chain at the treasury, the gas fee with them, paid by the utility.
    assert deployer.balance_of(token=contracts.ovpp_token, owner=treasury) == (
        10 * OVPP + job.fee_amount
    )
    assert deployer.balance_of(token=contracts.ovpp_token, owner=wallet) == (
        90 * OVPP - job.fee_amount
    )
    shown = await budget(stack, admin)
    assert (shown["funds"], shown["pending"]) == (format_units(credit, 18), "0")
    assert shown["fundings"][0]["status"] == "CREDITED"

    # The same key again: the same funding, nothing queued, moved or credited twice.
    again = await fund(stack, admin, amount="10", idempotencyKey=key)
    assert again["__typename"] == "SponsorBudget" and again["funds"] == shown["funds"]
    await work_until_final(stack)
    assert await rows(stack) == (credit, 1, 1)
    assert deployer.balance_of(token=contracts.ovpp_token, owner=treasury) == (
        10 * OVPP + job.fee_amount
    )
    other = await fund(stack, admin, amount="11", idempotencyKey=key)
    assert (other["__typename"], other["field"]) == ("InvalidInput", "idempotencyKey")


async def test_a_mined_funding_is_credited_only_when_its_transfer_is_final(
    own_stack: OwnStack, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    """With two confirmations, a mined transfer is not final: no funds until the next block."""
    stack, admin = own_stack, admin_token(test_issuer)
    deployer.mint(token=contracts.ovpp_token, to=await utility_address(stack), amount=50 * OVPP)
    credit = await worth_in_gas(stack, 20 * OVPP, TokenKind.OVPP)
    funded = await fund(stack, admin, amount="20", idempotencyKey=f"fund-{uuid.uuid4()}")
    assert funded["pending"] == format_units(credit, 18)

    worker = RelayerWorker(stack.services, name="two-confirmations")
    worker.settings = stack.settings.model_copy(update={"relayer_confirmations": 2})
    try:
        await tick_until(worker, stack.services.db, lambda counts: counts[RelayStatus.MINED] == 1)
        assert await rows(stack) == (0, 1, 1)
        shown = await budget(stack, admin)
        assert (shown["funds"], shown["fundings"][0]["status"]) == ("0", "PENDING")
        deployer.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        await tick_until(
            worker, stack.services.db, lambda counts: counts[RelayStatus.CONFIRMED] == 1
        )
    finally:
        await worker.rpc.close()
    assert await rows(stack) == (credit, 1, 1)
    shown = await budget(stack, admin)
    assert (shown["funds"], shown["pending"]) == (format_units(credit, 18), "0")


async def test_a_wallet_without_the_tokens_gets_insufficient_funds_and_nothing_is_queued(
    own_stack: OwnStack, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    stack, admin = own_stack, admin_token(test_issuer)
    wallet = await utility_address(stack)
    deployer.mint(token=contracts.ovpp_token, to=wallet, amount=5 * OVPP)

    for fields in ({"amount": "5"}, {"amount": "1", "token": "STABLECOIN"}):
        refused = await fund(stack, admin, idempotencyKey=f"fund-{uuid.uuid4()}", **fields)
        assert refused["__typename"] == "InsufficientFunds", refused
    usd = next(t for t in stack.services.chain.tokens if t.kind == TokenKind.STABLECOIN)
    assert refused["token"]["symbol"] == usd.symbol and refused["available"] == "0"
    funds_before = (await budget(stack, admin))["funds"]
    assert funds_before == "0"
    assert await rows(stack) == (0, 0, 0), "no job and no funding"
    assert deployer.balance_of(token=contracts.ovpp_token, owner=wallet) == 5 * OVPP


async def test_an_admin_cannot_raise_its_funds_without_moving_value(
    own_stack: OwnStack, test_issuer: TestIssuer
) -> None:
    """The old ``fundSponsorship`` added ``amount`` to the funds, paid by nobody."""
    stack, admin = own_stack, admin_token(test_issuer)
    body = await gql(
        stack.client,
        "mutation($input: FundSponsorshipInput!) { fundSponsorship(input: $input) { __typename } }",
        {"input": {"amount": "0.5", "idempotencyKey": f"free-{uuid.uuid4()}"}},
        token=admin,
    )
    assert "errors" not in body, body
    body = await gql(stack.client, "{ utilityAdmin { sponsorBudget { funds } } }", token=admin)
    assert body["data"]["utilityAdmin"]["sponsorBudget"]["funds"] == "0", body
    assert (await rows(stack))[0] == 0
