"""The card onramp from a test: buying through GraphQL, paying on localstripe, signed webhooks,
the rows a payment leaves, and the environment of an operator's ``ovpp-wallet``."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.settings import Settings
from devsupport.anvil import LocalChain
from devsupport.local_stripe import LocalStripe
from onramp.delivery import delivery_key
from onramp.models import OnrampPayment, StripeEvent
from programs.models import Enrollment as EnrollmentRow
from relayer.models import RelayTransaction
from relayer.runner import RunningRelayer
from tests.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET
from tests.support.enrollment import ENROLL, add_device, program_id
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.relayer_pause import relayer_paused
from tests.support.stripe import Delivery, StripeTestClient, WebhookTap, signed_event
from tests.support.wallets import Customer, new_customer

OVPP = 10**18
USDC = 10**6
QUOTE = """
mutation($input: OnrampQuoteInput!) {
  quoteOnramp(input: $input) {
    __typename
    ... on OnrampQuote { id tokenAmount fiatAmount fee currency price expiresAt token { symbol } }
    ... on InvalidInput { message field }
    ... on OnrampUnavailable { message }
  }
}
"""


PAYMENT_FIELDS = """
  id purpose status tokenAmount fiatAmount fee currency paymentIntentId clientSecret
  refundedAmount refundFailedAmount disputed clawbackRequired error enrollmentId
  token { symbol }
  deliveryTransaction { id status hash amount to token { symbol } }
"""


CREATE = f"""
mutation($input: CreateOnrampPaymentInput!) {{
  createOnrampPayment(input: $input) {{
    __typename
    ... on OnrampPayment {{ {PAYMENT_FIELDS} }}
    ... on InvalidInput {{ message field }}
    ... on QuoteExpired {{ message }}
    ... on OnrampUnavailable {{ message }}
  }}
}}
"""


PAYMENTS = f"{{ viewer {{ onrampPayments {{ {PAYMENT_FIELDS} }} }} }}"


@dataclass
class Live:
    """The app served over real HTTP (localstripe's webhooks reach it there) behind a tap."""

    url: str
    tap: WebhookTap
    stripe: StripeTestClient

    async def deliver(self, delivery: Delivery) -> httpx.Response:
        return await self.post(delivery.body, delivery.signature)

    async def post(self, body: bytes, signature: str | None) -> httpx.Response:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if signature is not None:
            headers["Stripe-Signature"] = signature
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(f"{self.url}/webhooks/stripe", content=body, headers=headers)


async def buy(
    client: httpx.AsyncClient,
    customer: Customer,
    *,
    token: str = "OVPP",  # noqa: S107 (a token kind, not a secret)
    token_amount: str | None = None,
    fiat_amount: str | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    amounts = {"tokenAmount": token_amount} if token_amount else {"fiatAmount": fiat_amount}
    body = await gql(
        client,
        QUOTE,
        {"input": {"token": token, "currency": "USD", **amounts}},
        token=customer.token,
    )
    quote = body["data"]["quoteOnramp"]
    assert quote["__typename"] == "OnrampQuote", body
    body = await gql(
        client,
        CREATE,
        {
            "input": {
                "token": token,
                "currency": "usd",
                "quoteId": quote["id"],
                "idempotencyKey": key or str(uuid.uuid4()),
                **amounts,
            }
        },
        token=customer.token,
    )
    payment = body["data"]["createOnrampPayment"]
    assert payment["__typename"] == "OnrampPayment", body
    return {**payment, "quote": quote}


async def wait_payment(
    client: httpx.AsyncClient,
    customer: Customer,
    payment_id: str,
    status: str,
    *,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """The payment as its customer reads it (GraphQL), once it is ``status`` (DELIVERED: with
    its delivery confirmed)."""
    deadline = time.monotonic() + timeout
    while True:
        body = await gql(client, PAYMENTS, token=customer.token)
        assert "errors" not in body, body
        node = next(p for p in body["data"]["viewer"]["onrampPayments"] if p["id"] == payment_id)
        if node["status"] == status and (
            status != "DELIVERED" or node["deliveryTransaction"]["status"] == "CONFIRMED"
        ):
            return node
        assert time.monotonic() < deadline, f"payment still {node['status']}: {node}"
        await asyncio.sleep(0.1)


async def wait_processed(services: Services, event_ids: list[str], *, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with services.db.session() as session:
            rows = list(
                (
                    await session.execute(
                        select(StripeEvent).where(StripeEvent.stripe_event_id.in_(event_ids))
                    )
                ).scalars()
            )
        if len(rows) == len(set(event_ids)) and all(r.processed_at for r in rows):
            return
        assert time.monotonic() < deadline, [(r.type, r.processed_at, r.last_error) for r in rows]
        await asyncio.sleep(0.05)


async def post_signed_event(
    live: Live, services: Services, *, event_type: str, obj: dict[str, Any]
) -> None:
    """An event localstripe never sends (see the module's docstring), signed as Stripe signs it,
    posted to the app and processed."""
    body, signature = signed_event(STRIPE_WEBHOOK_SECRET, event_type=event_type, obj=obj)
    assert (await live.post(body, signature)).status_code == 200
    await wait_processed(services, [json.loads(body)["id"]])


def dispute_of(intent: dict[str, Any]) -> dict[str, Any]:
    """A new dispute, as Stripe reports it, of the whole of a paid PaymentIntent's charge."""
    return {
        "id": f"dp_{uuid.uuid4().hex[:14]}",
        "object": "dispute",
        "amount": intent["amount"],
        "currency": "usd",
        "charge": intent["latest_charge"]["id"],
        "payment_intent": intent["id"],
        "reason": "fraudulent",
        "status": "needs_response",
    }


async def settle() -> None:
    """Give the processor (woken by each webhook, polling every 0.2 s) time to do anything it
    would do, so an assertion that it did nothing more means something."""
    await asyncio.sleep(0.6)


async def deliveries_of(services: Services, payment_intent_id: str) -> list[RelayTransaction]:
    async with services.db.session() as session:
        statement = select(RelayTransaction).where(
            RelayTransaction.idempotency_key == delivery_key(payment_intent_id)
        )
        return list((await session.execute(statement)).scalars())


async def payment_row(services: Services, payment_id: str) -> OnrampPayment:
    async with services.db.session() as session:
        row = await session.get(OnrampPayment, payment_id)
    assert row is not None
    return row


async def pay_with_a_delivery_the_node_refuses(
    live: Live,
    client: httpx.AsyncClient,
    customer: Customer,
    services: Services,
    payment: dict[str, Any],
) -> None:
    """With the relayer paused: the payment succeeds and its delivery is queued, then made a
    transaction the node refuses (anvil: "intrinsic gas too high"), as it would any broken
    one, so the delivery fails without sending a token once the relayer runs again."""
    await live.stripe.pay(payment["paymentIntentId"])
    await wait_payment(client, customer, payment["id"], "DELIVERING")
    [job] = await deliveries_of(services, payment["paymentIntentId"])
    async with services.db.session() as session:
        await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == job.id)
            .values(gas_limit=100_000_000)
        )


async def enrollment_once_final(
    services: Services, enrollment_id: str, *, timeout: float
) -> EnrollmentRow:
    """The enrollment's row once it is ACTIVE or FAILED. The row, not the API: no customer
    request may be what moves it."""
    deadline = time.monotonic() + timeout
    while True:
        async with services.db.session() as session:
            row = await session.get(EnrollmentRow, enrollment_id)
        if row.status in ("ACTIVE", "FAILED"):
            return row
        assert time.monotonic() < deadline, row.status
        await asyncio.sleep(0.1)


CARD_ENROLL = ENROLL.replace("error\n", "error paymentClientSecret\n", 1)


@dataclass
class CardEnrollment:
    """A card-paid enrollment waiting for its fee, and the fee's unpaid card payment."""

    customer: Customer
    device: str
    program: str
    variables: dict[str, Any]
    enrollment: dict[str, Any]
    payment_intent_id: str
    fee_payment: dict[str, Any]


async def open_card_enrollment(
    client: httpx.AsyncClient,
    services: Services,
    *,
    issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> CardEnrollment:
    """A new customer holding no OVPP asks to join dr-battery-2026 with a battery, paying by
    card: the enrollment is FEE_PENDING and its fee payment is found by its PaymentIntent."""
    customer = await new_customer(client, issuer, deployer, contracts)  # holds no OVPP
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    variables = {
        "input": {
            "deviceId": device,
            "programId": program,
            "protocol": "OPENADR_3",
            "paymentMethod": "CARD",
            "idempotencyKey": str(uuid.uuid4()),
        }
    }
    body = await gql(client, CARD_ENROLL, variables, token=customer.token)
    enrollment = body["data"]["enroll"]
    assert enrollment["__typename"] == "Enrollment", body
    assert enrollment["status"] == "FEE_PENDING", enrollment
    pi = enrollment["paymentClientSecret"].split("_secret_")[0]
    payments = (await gql(client, PAYMENTS, token=customer.token))["data"]["viewer"]
    fee_payment = next(p for p in payments["onrampPayments"] if p["paymentIntentId"] == pi)
    return CardEnrollment(
        customer=customer,
        device=device,
        program=program,
        variables=variables,
        enrollment=enrollment,
        payment_intent_id=pi,
        fee_payment=fee_payment,
    )


def serve_env(
    settings: Settings, *, kek: str, anvil: LocalChain, data_dir: Path, port: int
) -> dict[str, str]:
    """A production-mode `serve` on this test session's chain, database and local Stripe; its
    relayer is off (the session's relayer worker relays what it queues)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OVPP_")}
    env.update(
        PYTHONUNBUFFERED="1",
        OVPP_ENVIRONMENT="production",
        OVPP_DATA_DIR=str(data_dir),
        OVPP_PORT=str(port),
        OVPP_DATABASE_URL=settings.resolved_database_url,
        OVPP_RPC_URL=anvil.rpc_url,
        OVPP_ADDRESS_BOOK=str(settings.address_book),
        OVPP_KEK=kek,
        OVPP_METRICS_TOKEN=f"metrics-{uuid.uuid4().hex}",  # production serves /metrics to it only
        OVPP_TENANTS=json.dumps([tenant.model_dump() for tenant in settings.tenants]),
        OVPP_RELAYER_IN_SERVE="false",
        OVPP_STRIPE_API_BASE=settings.resolved_stripe_api_base,
        OVPP_STRIPE_API_KEY=STRIPE_API_KEY,
        OVPP_STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
        OVPP_ONRAMP_PROCESSOR_POLL_SECONDS="0.2",
        OVPP_LOG_LEVEL="WARNING",
    )
    return env


FAILURE_EVENTS = ("charge.refund.updated", "refund.failed")


async def fail_refund(localstripe: LocalStripe, refund_id: str, reason: str) -> dict[str, Any]:
    """The card network refuses a refund Stripe accepted earlier."""
    async with httpx.AsyncClient(
        base_url=localstripe.url, headers={"Authorization": f"Bearer {STRIPE_API_KEY}"}
    ) as http:
        response = await http.post(
            f"/v1/refunds/{refund_id}/_fail", data={"failure_reason": reason}
        )
    assert response.status_code == 200, response.text
    return response.json()


async def undelivered_and_refunded(
    client: httpx.AsyncClient,
    live: Live,
    relayer: RunningRelayer,
    services: Services,
    customer: Customer,
    *,
    token_amount: str,
) -> dict[str, Any]:
    """A payment whose delivery failed, refunded in full by the processor (REFUNDED). From
    then on the test holds the PaymentIntent's webhooks at the tap (``live.tap.held``)."""
    payment = await buy(client, customer, token_amount=token_amount)
    async with relayer_paused(relayer, services):
        await pay_with_a_delivery_the_node_refuses(live, client, customer, services, payment)
        live.tap.held.add(payment["paymentIntentId"])
    node = await wait_payment(client, customer, payment["id"], "REFUNDED")
    assert node["refundedAmount"] == node["fiatAmount"] and node["refundFailedAmount"] == "0"
    return payment
