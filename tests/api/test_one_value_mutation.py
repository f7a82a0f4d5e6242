"""A GraphQL operation carries at most one mutation that moves value or writes the chain
(``VALUE_MOVING_MUTATIONS``): a document with two of them, however they are spelled (aliases,
a fragment spread on Mutation, an inline fragment), is refused before anything runs, with a
clear error; nothing is queued and no PaymentIntent is made. One such mutation, the others
beside it, and queries, are unaffected."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from eth_account import Account

from api.container import Services
from api.graphql.extensions import TOO_MANY_VALUE_MUTATIONS, VALUE_MOVING_MUTATIONS
from api.graphql.schema import Mutation
from devsupport.local_stripe import LocalStripe
from tests.conftest import STRIPE_API_KEY
from tests.support.graphql import error_codes, gql
from tests.support.onramp import QUOTE as ONRAMP_QUOTE
from tests.support.stripe import StripeTestClient
from tests.support.transfers import jobs_of, quote
from tests.support.wallets import Customer, FundedCustomer

OVPP = 10**18

TRANSFER_FIELD = """
  {alias}transfer(input: {{token: OVPP, to: "{to}", amount: "1", feeToken: OVPP,
                          quoteId: "{quote}", idempotencyKey: "{key}"}}) {{
    __typename ... on Transaction {{ id status }} ... on InvalidInput {{ message field }}
  }}
"""


async def transfer_field(client: httpx.AsyncClient, customer: Customer, *, alias: str = "") -> str:
    """A ``transfer`` field, with a fresh quote of its own, ready to run."""
    to = Account.create().address
    made = await quote(client, customer.token, token="OVPP", to=to, amount="1", feeToken="OVPP")
    return TRANSFER_FIELD.format(
        alias=f"{alias}: " if alias else "", to=to, quote=made["id"], key=uuid.uuid4()
    )


def assert_refused(body: dict[str, Any], *fields: str) -> None:
    """Refused before execution: no data at all, one error naming the fields and the rule."""
    assert body.get("data") is None, body
    assert error_codes(body) == [TOO_MANY_VALUE_MUTATIONS], body
    message = body["errors"][0]["message"]
    assert "at most one mutation that moves value" in message, message
    for field in fields:
        assert field in message, message


def test_every_value_moving_field_is_a_mutation_of_the_schema() -> None:
    """A renamed mutation would silently escape the rule."""
    definition = Mutation.__strawberry_definition__  # type: ignore[attr-defined]
    names = {field.graphql_name or _camel(field.python_name) for field in definition.fields}
    assert VALUE_MOVING_MUTATIONS <= names, VALUE_MOVING_MUTATIONS - names


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def test_two_transfers_in_one_document_are_refused_and_nothing_is_queued(
    client: httpx.AsyncClient,
    services: Services,
    relayer: object,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=100 * OVPP)
    aliased = (
        "mutation {"
        + await transfer_field(client, customer, alias="a")
        + await transfer_field(client, customer, alias="b")
        + "}"
    )
    assert_refused(await gql(client, aliased, token=customer.token), "a: transfer", "b: transfer")

    # The second one hidden in a named fragment on Mutation, and in an inline fragment.
    spread = (
        "fragment Second on Mutation {"
        + await transfer_field(client, customer, alias="second")
        + "} mutation { ...Second "
        + await transfer_field(client, customer)
        + "}"
    )
    assert_refused(await gql(client, spread, token=customer.token), "second: transfer")
    inline = (
        "mutation { ... on Mutation {"
        + await transfer_field(client, customer, alias="x")
        + "} ... {"
        + await transfer_field(client, customer, alias="y")
        + "} }"
    )
    assert_refused(await gql(client, inline, token=customer.token), "x: transfer", "y: transfer")
    assert await jobs_of(services, customer.address) == []

    # One transfer, beside fields that move nothing (a quote), still runs.
    one = (
        "mutation { q: quoteTransfer(input: {token: OVPP, to: "
        f'"{Account.create().address}", amount: "1", feeToken: OVPP}}) {{ id }}'
        + await transfer_field(client, customer, alias="t")
        + "}"
    )
    body = await gql(client, one, token=customer.token)
    assert "errors" not in body, body
    assert body["data"]["t"]["__typename"] == "Transaction", body
    assert [job.id for job in await jobs_of(services, customer.address)] == [
        body["data"]["t"]["id"]
    ]


async def test_a_card_payment_and_a_transfer_in_one_document_are_refused_before_stripe(
    client: httpx.AsyncClient,
    services: Services,
    relayer: object,
    funded_customer: FundedCustomer,
    localstripe: LocalStripe,
) -> None:
    """The review's "buy and send" screen: refused whole, so no PaymentIntent exists whose
    client secret could outlive a rolled-back row."""
    customer = await funded_customer(ovpp=100 * OVPP)
    body = await gql(
        client,
        ONRAMP_QUOTE,
        {"input": {"token": "OVPP", "currency": "USD", "tokenAmount": "100"}},
        token=customer.token,
    )
    onramp_quote = body["data"]["quoteOnramp"]
    assert onramp_quote["__typename"] == "OnrampQuote", body
    document = (
        'mutation { p: createOnrampPayment(input: {token: OVPP, tokenAmount: "100", '
        f'currency: "USD", quoteId: "{onramp_quote["id"]}", idempotencyKey: "{uuid.uuid4()}"}})'
        " { __typename ... on OnrampPayment { id clientSecret } }"
        + await transfer_field(client, customer, alias="t")
        + "}"
    )
    assert_refused(await gql(client, document, token=customer.token), "p: createOnrampPayment")
    stripe = StripeTestClient(localstripe.url, STRIPE_API_KEY)
    try:
        assert await stripe.payment_intents_with_metadata("ovpp_wallet", customer.address) == []
    finally:
        await stripe.close()
    payments = await gql(client, "{ viewer { onrampPayments { id } } }", token=customer.token)
    assert payments["data"]["viewer"]["onrampPayments"] == [], payments
    assert await jobs_of(services, customer.address) == []


async def test_queries_and_separate_operations_are_unaffected(
    client: httpx.AsyncClient, funded_customer: FundedCustomer
) -> None:
    customer = await funded_customer()
    # A query may name mutation-like aliases; only mutation operations are counted.
    body = await gql(
        client, "{ transfer: chain { name } enroll: chain { chainId } }", token=customer.token
    )
    assert "errors" not in body, body
    # Two operations in one document, each with one transfer: only the one named runs.
    to = Account.create().address
    document = "".join(
        f'mutation {name} {{ transfer(input: {{token: OVPP, to: "{to}", amount: "1", '
        f'feeToken: OVPP, quoteId: "none", idempotencyKey: "{uuid.uuid4()}"}}) '
        "{ __typename } }"
        for name in ("First", "Second")
    )
    response = await client.post(
        "/graphql",
        json={"query": document, "operationName": "First"},
        headers={"Authorization": f"Bearer {customer.token}"},
    )
    body = response.json()
    assert TOO_MANY_VALUE_MUTATIONS not in error_codes(body), body
    assert body["data"]["transfer"]["__typename"] == "InvalidInput", body  # the unknown quote
