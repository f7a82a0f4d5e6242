"""A card payment survives whatever happens to the rest of its GraphQL document, and whatever
happens to its webhooks (review finding H4), on both databases, against localstripe and the
real processor:

- its row (and a card enrollment's) is committed before the client secret is returned, so a
  later field of the same document that fails, and rolls the request back, undoes nothing the
  customer can pay;
- a PaymentIntent of ours that no row matches is given its row back from its metadata;
- a payment still awaiting its card a while after it was made is re-read from Stripe, so one
  paid behind a lost webhook is delivered anyway.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
from sqlalchemy import delete, update
from sqlmodel import select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.db import utc_now
from onramp.models import OnrampPayment, StripeEvent
from onramp.processor import RunningProcessor
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.enrollment import add_device, program_id
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.onramp import (
    CREATE,
    OVPP,
    PAYMENTS,
    QUOTE,
    Live,
    buy,
    deliveries_of,
    enrollment_once_final,
    settle,
    wait_payment,
    wait_processed,
)
from tests.support.stripe import signed_event
from tests.support.wallets import ChainReader, Customer, new_customer

# A field after the payment in the same document whose typed failure rolls the request's
# session back (the review's scenario: what rolled back the payment's row).
FAILING_SIBLING = """
  d: addDevice(input: {make: "Voltstack", model: "VS-13.5", serial: "SN-1",
                       siteAddress: {line1: "1 Market St", city: "San Francisco", region: "CA",
                                     postalCode: "94105", country: "USA"}}) {
    __typename ... on InvalidInput { message field }
  }
"""
# A field that raises: the operation ends in a rollback and, the field being non-null, the
# answer carries no data at all (the client secret is lost with it, not the payment).
RAISING_SIBLING = """
  q: quoteTransfer(input: {token: OVPP, to: "not-an-address", amount: "1", feeToken: OVPP}) {
    id
  }
"""

PAYMENT = """
  p: createOnrampPayment(input: $input) {
    __typename ... on OnrampPayment { id status paymentIntentId clientSecret }
  }
"""
BUY_THEN_FAIL = f"mutation($input: CreateOnrampPaymentInput!) {{ {PAYMENT} {FAILING_SIBLING} }}"
BUY_THEN_RAISE = f"mutation($input: CreateOnrampPaymentInput!) {{ {PAYMENT} {RAISING_SIBLING} }}"

ENROLL_THEN_FAIL = f"""
mutation($input: EnrollInput!) {{
  e: enroll(input: $input) {{ __typename ... on Enrollment {{ id status paymentClientSecret }} }}
  {FAILING_SIBLING}
}}
"""


async def onramp_quote(client: httpx.AsyncClient, customer: Customer, amount: str) -> str:
    body = await gql(
        client,
        QUOTE,
        {"input": {"token": "OVPP", "currency": "USD", "tokenAmount": amount}},
        token=customer.token,
    )
    assert body["data"]["quoteOnramp"]["__typename"] == "OnrampQuote", body
    return body["data"]["quoteOnramp"]["id"]


async def test_a_payment_whose_document_fails_afterwards_is_still_delivered_when_paid(
    client: httpx.AsyncClient,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    variables = {
        "input": {
            "token": "OVPP",
            "tokenAmount": "40",
            "currency": "USD",
            "quoteId": await onramp_quote(client, customer, "40"),
            "idempotencyKey": str(uuid.uuid4()),
        }
    }
    body = await gql(client, BUY_THEN_FAIL, variables, token=customer.token)
    assert body["data"]["d"]["__typename"] == "InvalidInput", body
    payment = body["data"]["p"]
    assert payment["__typename"] == "OnrampPayment", body
    pi = payment["paymentIntentId"]
    assert payment["clientSecret"].startswith(f"{pi}_secret_")

    await live.stripe.pay(pi)
    await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert chain.ovpp_of(customer.address) == 40 * OVPP
    assert len(await deliveries_of(services, pi)) == 1
    again = (await gql(client, CREATE, variables, token=customer.token))["data"]
    assert again["createOnrampPayment"]["id"] == payment["id"], again
    assert again["createOnrampPayment"]["status"] == "DELIVERED", again

    # A field that raises after the payment: no data comes back, but the payment is on
    # record (the app's retry with the same key gets it and its secret).
    variables["input"] |= {
        "quoteId": await onramp_quote(client, customer, "10"),
        "tokenAmount": "10",
        "idempotencyKey": str(uuid.uuid4()),
    }
    body = await gql(client, BUY_THEN_RAISE, variables, token=customer.token)
    assert body["data"] is None and body["errors"][0]["path"] == ["q"], body
    listed = (await gql(client, PAYMENTS, token=customer.token))["data"]["viewer"]
    assert [p["tokenAmount"] for p in listed["onrampPayments"]] == ["10", "40"], listed
    retry = (await gql(client, CREATE, variables, token=customer.token))["data"]
    made = listed["onrampPayments"][0]
    assert retry["createOnrampPayment"]["id"] == made["id"], retry
    intent = await live.stripe.payment_intent(made["paymentIntentId"])
    assert retry["createOnrampPayment"]["clientSecret"] == intent["client_secret"], retry


async def test_a_card_enrollment_whose_document_fails_afterwards_still_connects_when_paid(
    client: httpx.AsyncClient,
    live: Live,
    processor: RunningProcessor,
    registry_demo: object,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, demo_issuer, deployer, contracts)  # the program's
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    variables = {
        "input": {
            "deviceId": device,
            "programId": await program_id(services, "dr-battery-2026"),
            "protocol": "OPENADR_3",
            "paymentMethod": "CARD",
            "idempotencyKey": str(uuid.uuid4()),
        }
    }
    body = await gql(client, ENROLL_THEN_FAIL, variables, token=customer.token)
    assert body["data"]["d"]["__typename"] == "InvalidInput", body
    enrollment = body["data"]["e"]
    assert (enrollment["__typename"], enrollment["status"]) == ("Enrollment", "FEE_PENDING"), body
    await live.stripe.pay(enrollment["paymentClientSecret"].split("_secret_")[0])
    row = await enrollment_once_final(services, enrollment["id"], timeout=60)
    assert row.status == "ACTIVE", row.error


async def test_a_paid_payment_intent_whose_row_is_gone_is_recreated_from_its_metadata(
    client: httpx.AsyncClient,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The row lost as a rolled-back request lost it before the fix (or a crash between
    Stripe and the commit): the webhook's PaymentIntent matches no row."""
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    key = str(uuid.uuid4())
    payment = await buy(client, customer, token_amount="30", key=key)
    async with services.db.session() as session:
        await session.execute(delete(OnrampPayment).where(OnrampPayment.id == payment["id"]))
    pi = payment["paymentIntentId"]

    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)
    await wait_processed(services, [succeeded.event_id])
    node = await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert (node["paymentIntentId"], node["tokenAmount"], node["fiatAmount"], node["fee"]) == (
        pi,
        "30",
        payment["fiatAmount"],
        payment["fee"],
    )
    assert chain.ovpp_of(customer.address) == 30 * OVPP
    # The recreated row keeps the customer's idempotency key: a retry finds it.
    retry = await gql(
        client,
        CREATE,
        {
            "input": {
                "token": "OVPP",
                "tokenAmount": "30",
                "currency": "usd",
                "quoteId": payment["quote"]["id"],
                "idempotencyKey": key,
            }
        },
        token=customer.token,
    )
    assert retry["data"]["createOnrampPayment"]["id"] == payment["id"], retry
    assert retry["data"]["createOnrampPayment"]["status"] == "DELIVERED", retry


async def test_a_payment_intent_that_is_not_ours_makes_no_row_and_says_why(
    client: httpx.AsyncClient,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Another integration's PaymentIntent on the same account (paid), and one whose metadata
    names a wallet that is not its customer's (left unpaid: a succeeded one with our metadata
    is, rightly, a mismatch for `reconcile`): nothing is recreated or delivered."""
    victim = await new_customer(client, test_issuer, deployer, contracts)
    real = await buy(client, victim, token_amount="5")
    metadata = (await live.stripe.payment_intent(real["paymentIntentId"]))["metadata"]
    someone = await new_customer(client, test_issuer, deployer, contracts)
    forged = {**metadata, "ovpp_wallet": someone.address}
    cases = {
        "not an onramp PaymentIntent": {"shop_order": "42"},
        "names a wallet that is not its customer's": forged,
    }
    for reason, meta in cases.items():
        data = {"amount": "500", "currency": "usd", "payment_method_types[]": "card"}
        data.update({f"metadata[{k}]": v for k, v in meta.items()})
        intent = await live.stripe._post("/v1/payment_intents", data)
        if meta is forged:
            body, signature = signed_event(
                STRIPE_WEBHOOK_SECRET,
                event_type="payment_intent.payment_failed",
                obj={"id": intent["id"], "object": "payment_intent"},
            )
            assert (await live.post(body, signature)).status_code == 200
            event_id = json.loads(body)["id"]
        else:
            await live.stripe.pay(intent["id"])
            event_id = (await live.tap.wait_for("payment_intent.succeeded", intent["id"])).event_id
        await wait_processed(services, [event_id])
        async with services.db.session() as session:
            event = (
                await session.execute(
                    select(StripeEvent).where(StripeEvent.stripe_event_id == event_id)
                )
            ).scalar_one()
            assert reason in (event.last_error or ""), event.last_error
            rows = await session.execute(
                select(OnrampPayment).where(OnrampPayment.stripe_payment_intent_id == intent["id"])
            )
            assert rows.first() is None
        assert await deliveries_of(services, intent["id"]) == []
    payments = (await gql(client, PAYMENTS, token=someone.token))["data"]["viewer"]
    assert payments["onrampPayments"] == []


async def test_a_stale_unpaid_payment_paid_behind_a_lost_webhook_is_delivered_by_a_reread(
    client: httpx.AsyncClient,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token_amount="20")
    pi = payment["paymentIntentId"]
    live.tap.held.add(pi)  # its webhooks never reach the app
    await live.stripe.pay(pi)
    await live.tap.wait_for("payment_intent.succeeded", pi)
    await settle()
    # Fresh, it is not re-read: only its webhook would move it.
    await wait_payment(client, customer, payment["id"], "REQUIRES_PAYMENT")
    assert chain.ovpp_of(customer.address) == 0

    an_hour_ago = utc_now() - timedelta(hours=1)  # past OVPP_ONRAMP_REREAD_AFTER_SECONDS
    async with services.db.session() as session:
        await session.execute(
            update(OnrampPayment)
            .where(OnrampPayment.id == payment["id"])
            .values(created_at=an_hour_ago, updated_at=an_hour_ago)
        )
    processor.wake()
    await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert chain.ovpp_of(customer.address) == 20 * OVPP
    assert len(await deliveries_of(services, pi)) == 1
    async with services.db.session() as session:
        events = await session.execute(
            select(StripeEvent).where(StripeEvent.payment_intent_id == pi)
        )
        assert events.first() is None  # no webhook of it ever arrived
