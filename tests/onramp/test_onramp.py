"""The card onramp end to end, on both databases: GraphQL → a Stripe PaymentIntent on a local
Stripe API (localstripe) → a test card → localstripe's signed webhook to a live uvicorn server
of the app → the onramp processor → a relayed transfer from the treasury → the balance on chain.

localstripe sends each event once, 1 s after it happens, and never sends
``payment_intent.payment_failed`` after a failed 3-D Secure, ``charge.refunded`` or
``charge.dispute.created``: those are made here and signed with the endpoint secret exactly as
Stripe signs them (tests/support/stripe.py). Redeliveries re-POST the captured raw body and
signature header byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.profiles import deployer_key
from core.settings import Settings
from devsupport.anvil import LocalChain
from devsupport.demo import DEMO_PROGRAMS
from onramp.models import PaymentStatus, StripeEvent
from onramp.processor import RunningProcessor
from programs import card
from programs.catalog import program_by_id
from programs.models import Device
from programs.operator import publish_program
from programs.registry import registry_of
from programs.status import BOUGHT_FEE_KEPT
from relayer import sponsorship
from relayer.models import RelayTransaction
from relayer.runner import RunningRelayer
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.cli import ovpp_wallet
from tests.support.enrollment import VIEWER_ENROLLMENTS
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.onramp import (
    CARD_ENROLL,
    CREATE,
    OVPP,
    Live,
    buy,
    deliveries_of,
    dispute_of,
    enrollment_once_final,
    open_card_enrollment,
    pay_with_a_delivery_the_node_refuses,
    payment_row,
    post_signed_event,
    serve_env,
    settle,
    wait_payment,
    wait_processed,
)
from tests.support.ports import free_port
from tests.support.relayer_pause import relayer_paused
from tests.support.stripe import Delivery, sign, signed_event
from tests.support.wallets import ChainReader, new_customer
from wallet.models import Wallet

CLI = Path(sys.executable).with_name("ovpp-wallet")


# -- fixtures ------------------------------------------------------------------------------------


# -- helpers -------------------------------------------------------------------------------------


async def events_stored(services: Services, event_id: str) -> int:
    async with services.db.session() as session:
        statement = (
            select(func.count())
            .select_from(StripeEvent)
            .where(StripeEvent.stripe_event_id == event_id)
        )
        return int((await session.execute(statement)).scalar_one())


# -- tests ---------------------------------------------------------------------------------------


async def test_a_card_payment_delivers_the_quoted_tokens_exactly_once_even_delivered_four_times(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    key = str(uuid.uuid4())
    payment = await buy(client, customer, token_amount="250", key=key)
    # 250 OVPP at 0.10 = 25.00 net; (25.00 + 0.30) / (1 - 3 %) = 26.09 charged, 1.09 of it fee.
    assert payment["quote"]["fiatAmount"] == "26.09" and payment["quote"]["fee"] == "1.09"
    assert (payment["status"], payment["tokenAmount"], payment["fiatAmount"]) == (
        "REQUIRES_PAYMENT",
        "250",
        "26.09",
    )
    pi = payment["paymentIntentId"]
    assert payment["clientSecret"].startswith(f"{pi}_secret_")

    # Our own idempotency (localstripe ignores Idempotency-Key): the same key and input give the
    # same payment and PaymentIntent; the same key with another input is refused.
    again = await gql(
        client,
        CREATE,
        {
            "input": {
                "token": "OVPP",
                "tokenAmount": "250",
                "currency": "USD",
                "quoteId": payment["quote"]["id"],
                "idempotencyKey": key,
            }
        },
        token=customer.token,
    )
    assert again["data"]["createOnrampPayment"]["id"] == payment["id"]
    assert again["data"]["createOnrampPayment"]["paymentIntentId"] == pi
    other = await gql(
        client,
        CREATE,
        {
            "input": {
                "token": "OVPP",
                "tokenAmount": "251",
                "currency": "USD",
                "quoteId": payment["quote"]["id"],
                "idempotencyKey": key,
            }
        },
        token=customer.token,
    )
    assert other["data"]["createOnrampPayment"]["field"] == "idempotencyKey", other
    made = await live.stripe.payment_intents_with_metadata("ovpp_payment_id", payment["id"])
    assert len(made) == 1
    intent = await live.stripe.payment_intent(pi)
    assert intent["amount"] == 2609 and intent["currency"] == "usd"
    assert intent["metadata"]["ovpp_wallet"] == customer.address

    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)
    delivered = await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert chain.ovpp_of(customer.address) == 250 * OVPP
    transaction = delivered["deliveryTransaction"]
    assert transaction["to"] == customer.address and transaction["amount"] == "250"
    assert chain.receipt(transaction["hash"])["status"] == 1

    for _ in range(3):  # Stripe delivers at least once: the same event, byte for byte
        response = await live.deliver(succeeded)
        assert response.status_code == 200 and response.json()["duplicate"] is True
    await settle()
    assert await events_stored(services, succeeded.event_id) == 1
    assert len(await deliveries_of(services, pi)) == 1
    assert chain.ovpp_of(customer.address) == 250 * OVPP
    assert chain.native(customer.address) == 0


async def test_out_of_order_events_deliver_once_and_a_stale_failure_changes_nothing(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token="STABLECOIN", fiat_amount="20")
    # 20.00 − (3 % + 0.30) = 19.10 net, at 1.00 per token.
    assert payment["tokenAmount"] == "19.1" and payment["fee"] == "0.9"
    pi = payment["paymentIntentId"]
    live.tap.held.add(pi)

    # First attempt: 3-D Secure fails (Stripe would send payment_intent.payment_failed with
    # this snapshot); the customer then pays with another card and it succeeds.
    failed_snapshot = await live.stripe.fail_three_d_secure(pi, payment["clientSecret"])
    assert failed_snapshot["status"] == "requires_payment_method"
    failed_body, failed_signature = signed_event(
        STRIPE_WEBHOOK_SECRET, event_type="payment_intent.payment_failed", obj=failed_snapshot
    )
    failed = json.loads(failed_body)["id"]
    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)
    live.tap.held.discard(pi)

    # They arrive the other way round, the success three times.
    assert (await live.deliver(succeeded)).status_code == 200
    assert (await live.post(failed_body, failed_signature)).status_code == 200
    assert (await live.deliver(succeeded)).status_code == 200
    assert (await live.deliver(succeeded)).status_code == 200
    await wait_processed(services, [succeeded.event_id, failed])
    node = await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert node["error"] is None
    assert chain.usd_of(customer.address) == 19_100_000
    assert len(await deliveries_of(services, pi)) == 1

    # In order, the failure marks the payment (the customer may try another card) and the
    # success then delivers.
    late = await buy(client, customer, token="STABLECOIN", fiat_amount="5")
    snapshot = await live.stripe.fail_three_d_secure(late["paymentIntentId"], late["clientSecret"])
    body, signature = signed_event(
        STRIPE_WEBHOOK_SECRET, event_type="payment_intent.payment_failed", obj=snapshot
    )
    assert (await live.post(body, signature)).status_code == 200
    failed_node = await wait_payment(client, customer, late["id"], "PAYMENT_FAILED")
    assert "authentication" in failed_node["error"]
    await live.stripe.pay(late["paymentIntentId"])
    await wait_payment(client, customer, late["id"], "DELIVERED")
    assert chain.usd_of(customer.address) == 19_100_000 + 4_550_000


async def test_forged_and_stale_signatures_get_400_and_change_nothing(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token_amount="40")
    pi = payment["paymentIntentId"]
    live.tap.held.add(pi)
    await live.stripe.pay(pi)
    genuine = await live.tap.wait_for("payment_intent.succeeded", pi)
    live.tap.held.discard(pi)
    now = int(time.time())
    tampered = genuine.body.replace(b'"livemode": false', b'"livemode": true', 1)
    assert tampered != genuine.body
    attempts = [
        (genuine.body, sign("whsec_not_the_endpoint_secret", genuine.body, timestamp=now)),
        (genuine.body, sign(STRIPE_WEBHOOK_SECRET, genuine.body, timestamp=now - 600)),
        (tampered, genuine.signature),
        (genuine.body, f"t={now},v1={'0' * 64}"),
        (genuine.body, None),
        (b"not json", sign(STRIPE_WEBHOOK_SECRET, b"not json", timestamp=now)),
    ]
    for body, signature in attempts:
        response = await live.post(body, signature)
        assert response.status_code == 400, (signature, response.text)
    await settle()
    assert await events_stored(services, genuine.event_id) == 0
    assert (await payment_row(services, payment["id"])).status == "REQUIRES_PAYMENT"
    assert await deliveries_of(services, pi) == []
    assert chain.ovpp_of(customer.address) == 0

    assert (await live.deliver(genuine)).status_code == 200  # the real one still works
    await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert chain.ovpp_of(customer.address) == 40 * OVPP


async def test_refund_before_delivery_sends_nothing_and_after_delivery_flags_a_clawback(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)

    # Refunded before the tokens were sent: the refund's event even arrives before the success.
    refunded = await buy(client, customer, token_amount="30")
    pi = refunded["paymentIntentId"]
    live.tap.held.add(pi)
    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)
    await live.stripe.refund(pi)
    charge = (await live.stripe.payment_intent(pi))["latest_charge"]
    assert charge["amount_refunded"] == charge["amount"]
    body, signature = signed_event(STRIPE_WEBHOOK_SECRET, event_type="charge.refunded", obj=charge)
    live.tap.held.discard(pi)
    assert (await live.post(body, signature)).status_code == 200
    assert (await live.deliver(succeeded)).status_code == 200
    await wait_processed(services, [succeeded.event_id, json.loads(body)["id"]])
    await settle()
    node = await wait_payment(client, customer, refunded["id"], "REFUNDED")
    assert node["refundedAmount"] == node["fiatAmount"] and node["deliveryTransaction"] is None
    assert await deliveries_of(services, pi) == []
    assert chain.ovpp_of(customer.address) == 0

    # Refunded, and another disputed, after the tokens were sent: flagged for clawback.
    for event_type in ("charge.refunded", "charge.dispute.created"):
        payment = await buy(client, customer, token_amount="10")
        pi = payment["paymentIntentId"]
        await live.stripe.pay(pi)
        await wait_payment(client, customer, payment["id"], "DELIVERED")
        intent = await live.stripe.payment_intent(pi)
        if event_type == "charge.refunded":
            await live.stripe.refund(pi)
            obj = (await live.stripe.payment_intent(pi))["latest_charge"]
        else:
            obj = dispute_of(intent)
        await post_signed_event(live, services, event_type=event_type, obj=obj)
        node = await wait_payment(client, customer, payment["id"], "DELIVERED")
        assert node["clawbackRequired"] is True, node
        assert node["disputed"] is (event_type == "charge.dispute.created")
        assert len(await deliveries_of(services, pi)) == 1
    assert chain.ovpp_of(customer.address) == 20 * OVPP


async def test_a_failed_delivery_is_refunded_in_full_once_and_sends_nothing(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token_amount="40")
    pi = payment["paymentIntentId"]
    async with relayer_paused(relayer, services):
        await pay_with_a_delivery_the_node_refuses(live, client, customer, services, payment)

    node = await wait_payment(client, customer, payment["id"], "REFUNDED")
    assert node["refundedAmount"] == node["fiatAmount"] == payment["fiatAmount"], node
    assert node["clawbackRequired"] is False and node["disputed"] is False
    assert node["error"].startswith("rejected by the node"), node
    assert node["deliveryTransaction"]["status"] == "FAILED"
    assert chain.ovpp_of(customer.address) == 0
    charge = (await live.stripe.payment_intent(pi))["latest_charge"]
    assert (
        charge["amount_refunded"] == charge["amount"] == int(Decimal(payment["fiatAmount"]) * 100)
    )
    [refund] = await live.stripe.refunds(pi)
    assert refund["amount"] == charge["amount"]

    # Stripe then reports the refund; it closes nothing more and flags nothing.
    await post_signed_event(live, services, event_type="charge.refunded", obj=charge)
    await settle()
    node = await wait_payment(client, customer, payment["id"], "REFUNDED")
    assert node["clawbackRequired"] is False
    assert len(await live.stripe.refunds(pi)) == 1
    assert len(await deliveries_of(services, pi)) == 1
    assert chain.ovpp_of(customer.address) == 0


async def test_a_failed_delivery_already_partly_or_wholly_refunded_gets_back_only_the_rest(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A refund the processor made and then lost track of (a crash before its update), and
    one an operator made in part: neither is paid out again."""
    customer = await new_customer(client, test_issuer, deployer, contracts)
    wholly, partly = [await buy(client, customer, token_amount="20") for _ in range(2)]
    async with relayer_paused(relayer, services):
        for payment in (wholly, partly):
            await pay_with_a_delivery_the_node_refuses(live, client, customer, services, payment)
        await live.stripe.refund(wholly["paymentIntentId"])
        await live.stripe.refund(partly["paymentIntentId"], amount=100)

    for payment, refunds in ((wholly, 1), (partly, 2)):
        node = await wait_payment(client, customer, payment["id"], "REFUNDED")
        assert node["refundedAmount"] == node["fiatAmount"] == payment["fiatAmount"], node
        charge = (await live.stripe.payment_intent(payment["paymentIntentId"]))["latest_charge"]
        assert charge["amount_refunded"] == charge["amount"]
        made = await live.stripe.refunds(payment["paymentIntentId"])
        assert len(made) == refunds and sum(r["amount"] for r in made) == charge["amount"]
    await settle()
    assert len(await live.stripe.refunds(wholly["paymentIntentId"])) == 1
    assert len(await live.stripe.refunds(partly["paymentIntentId"])) == 2


@pytest.mark.parametrize("change", [-100, +100], ids=["charged less", "charged more"])
async def test_a_payment_charged_another_amount_than_quoted_is_refunded_what_was_charged(
    change: int,
    client,
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
    quoted = int(Decimal(payment["fiatAmount"]) * 100)
    await live.stripe.change_amount(pi, quoted + change)
    await live.stripe.pay(pi)

    node = await wait_payment(client, customer, payment["id"], "REFUNDED")
    assert node["error"] == "Stripe charged an amount other than the quote: not delivered"
    assert node["deliveryTransaction"] is None
    charge = (await live.stripe.payment_intent(pi))["latest_charge"]
    assert charge["amount"] == quoted + change
    assert charge["amount_refunded"] == charge["amount"]
    assert [r["amount"] for r in await live.stripe.refunds(pi)] == [quoted + change]
    assert chain.ovpp_of(customer.address) == 0


async def test_a_card_paid_enrollment_becomes_active_after_the_payment_webhook(
    client,
    live: Live,
    processor: RunningProcessor,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    registry = registry_of(services.chain)
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    customer, device, program = opened.customer, opened.device, opened.program
    enrollment, pi, fee_payment = opened.enrollment, opened.payment_intent_id, opened.fee_payment
    assert enrollment["paymentMethod"] == "CARD"
    secret = enrollment["paymentClientSecret"]
    body = await gql(client, CARD_ENROLL, opened.variables, token=customer.token)
    replay = body["data"]["enroll"]
    assert replay["id"] == enrollment["id"] and replay["paymentClientSecret"] == secret

    assert fee_payment["purpose"] == "ENROLLMENT_FEE"
    assert fee_payment["enrollmentId"] == enrollment["id"]
    assert Decimal(fee_payment["tokenAmount"]) > 5  # the 5 OVPP fee and the gas fee
    assert fee_payment["status"] == "REQUIRES_PAYMENT"

    await live.stripe.pay(pi)  # the app's payment sheet; nothing else from the customer
    row = await enrollment_once_final(services, enrollment["id"], timeout=60)
    assert row.status == "ACTIVE", row.error
    async with services.db.session() as session:
        device_row = await session.get(Device, device)
        connection_id = await registry.active_connection(
            bytes.fromhex(device_row.device_id[2:]),
            bytes.fromhex((await program_by_id(session, program)).program_id[2:]),
        )
    assert connection_id is not None and "0x" + connection_id.hex() == row.connection_id
    connection = await registry.connection(connection_id)
    assert connection.owner == customer.address and connection.status == 1
    # The card bought exactly the fee and the gas fee, and the connection spent both.
    assert chain.ovpp_of(customer.address) == 0
    assert chain.native(customer.address) == 0
    node = await wait_payment(client, customer, fee_payment["id"], "DELIVERED")
    assert node["clientSecret"] is None


async def test_a_card_paid_enrollment_whose_fee_never_arrives_fails_and_is_refunded(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    customer, enrollment = opened.customer, opened.enrollment
    pi, fee_payment = opened.payment_intent_id, opened.fee_payment
    async with relayer_paused(relayer, services):
        await pay_with_a_delivery_the_node_refuses(live, client, customer, services, fee_payment)

    node = await wait_payment(client, customer, fee_payment["id"], "REFUNDED")
    assert node["refundedAmount"] == node["fiatAmount"], node
    row = await enrollment_once_final(services, enrollment["id"], timeout=30)
    # Failed as soon as the delivery failed, or once the refund went through: either way the
    # customer is told the OVPP never arrived and the card payment is (or was) refunded.
    assert row.status == "FAILED"
    assert row.error in (
        card.UNDELIVERED_AND_REFUNDED,
        card.GIVEN_UP[PaymentStatus.DELIVERY_FAILED.value],
    )
    assert len(await live.stripe.refunds(pi)) == 1
    assert chain.ovpp_of(customer.address) == 0


async def test_a_card_paid_enrollment_whose_program_closes_before_it_connects_keeps_the_ovpp(
    client,
    live: Live,
    processor: RunningProcessor,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The fee arrives, but the routing check run before connecting fails (the utility closed
    the program meanwhile): the enrollment fails saying why and where the OVPP bought is; the
    card payment stays DELIVERED (the tokens are the customer's) and nothing is connected."""
    chain = ChainReader(deployer, contracts)
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    customer, enrollment = opened.customer, opened.enrollment
    pi, fee_payment = opened.payment_intent_id, opened.fee_payment

    [spec] = [spec for spec in DEMO_PROGRAMS if spec.external_id == "dr-battery-2026"]
    operator = deployer_key(services.settings, services.chain.profile)
    await publish_program(
        services, tenant=registry_demo, spec=replace(spec, active=False), operator_key=operator
    )
    try:
        await live.stripe.pay(pi)
        row = await enrollment_once_final(services, enrollment["id"], timeout=60)
    finally:
        await publish_program(services, tenant=registry_demo, spec=spec, operator_key=operator)

    assert row.status == "FAILED" and row.connection_id is None
    seen = (await gql(client, VIEWER_ENROLLMENTS, token=customer.token))["data"]["viewer"]
    [failed] = [e for e in seen["enrollments"] if e["id"] == enrollment["id"]]
    assert failed["status"] == "FAILED"
    assert failed["error"] == (
        "the device can no longer join: the program does not exist, is closed, or belongs to "
        f"another utility; {BOUGHT_FEE_KEPT}"
    )
    node = await wait_payment(client, customer, fee_payment["id"], "DELIVERED")
    assert node["refundedAmount"] == "0" and not node["clawbackRequired"], node
    assert await live.stripe.refunds(pi) == []
    # Every token bought is still in the wallet; no gas token was ever needed.
    assert chain.ovpp_of(customer.address) == Decimal(fee_payment["tokenAmount"]) * 10**18
    assert chain.native(customer.address) == 0


async def test_a_card_paid_enrollment_whose_gas_sponsorship_refuses_fails_and_keeps_the_ovpp(
    client,
    live: Live,
    processor: RunningProcessor,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The utility sponsors its customers' gas, so the card buys only the connection fee; by
    the time the fee arrives its sponsorship refuses (here: a 1-wei cap per transaction). The
    enrollment fails saying why and where the OVPP bought is, instead of waiting in CONNECTING
    with no transaction; nothing is queued, and the wallet's forwarder nonces are given back."""
    chain = ChainReader(deployer, contracts)
    async with services.db.session() as session:
        demo_sponsor = await sponsorship.sponsor_of_tenant(session, registry_demo.id)
        assert demo_sponsor is not None
        before = (demo_sponsor.per_transaction_cap_wei, demo_sponsor.sponsors_transfers)
        demo_sponsor = await sponsorship.configure_sponsor(
            session, tenant_id=registry_demo.id, name=demo_sponsor.name, per_transaction_cap_wei=1
        )
        demo_sponsor.sponsors_transfers = True
        session.add(demo_sponsor)
    try:
        opened = await open_card_enrollment(
            client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
        )
        customer, enrollment = opened.customer, opened.enrollment
        pi, fee_payment = opened.payment_intent_id, opened.fee_payment
        assert Decimal(fee_payment["tokenAmount"]) == 5  # the fee alone: the gas is sponsored

        await live.stripe.pay(pi)
        row = await enrollment_once_final(services, enrollment["id"], timeout=60)
    finally:
        async with services.db.session() as session:
            restored = await sponsorship.configure_sponsor(
                session,
                tenant_id=registry_demo.id,
                name=demo_sponsor.name,
                per_transaction_cap_wei=before[0],
            )
            restored.sponsors_transfers = before[1]
            session.add(restored)

    assert row.status == "FAILED" and row.connection_id is None
    assert row.relay_transaction_id is None
    seen = (await gql(client, VIEWER_ENROLLMENTS, token=customer.token))["data"]["viewer"]
    [failed] = [e for e in seen["enrollments"] if e["id"] == enrollment["id"]]
    assert failed["status"] == "FAILED"
    assert failed["error"] == (
        "the utility's gas sponsorship refused: "
        f"{demo_sponsor.name} covers at most 1 wei of gas per transaction; "
        f"{BOUGHT_FEE_KEPT}"
    )
    node = await wait_payment(client, customer, fee_payment["id"], "DELIVERED")
    assert node["refundedAmount"] == "0" and not node["clawbackRequired"], node
    assert await live.stripe.refunds(pi) == []
    assert chain.ovpp_of(customer.address) == Decimal(fee_payment["tokenAmount"]) * 10**18
    async with services.db.session() as session:
        enroll_jobs = (
            await session.execute(
                select(func.count())
                .select_from(RelayTransaction)
                .where(RelayTransaction.customer_id == row.customer_id)
                .where(RelayTransaction.kind == "ENROLL")
            )
        ).scalar_one()
        wallet = (
            await session.execute(select(Wallet).where(Wallet.customer_id == row.customer_id))
        ).scalar_one()
    assert enroll_jobs == 0
    assert wallet.next_forwarder_nonce == 0  # the nonces taken for the connection, given back


# -- a real crash: `ovpp-wallet serve` killed between receiving the webhook and delivering --------


@contextlib.contextmanager
def serve_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as output:
        process = subprocess.Popen(
            [str(CLI), "serve"],
            env=env,
            cwd=env["OVPP_DATA_DIR"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


async def wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, tail(log)
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError("serve did not become ready\n" + tail(log))


async def wait_delivered(services: Services, payment_id: str, *, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while (await payment_row(services, payment_id)).status != "DELIVERED":
        assert time.monotonic() < deadline, await payment_row(services, payment_id)
        await asyncio.sleep(0.1)


async def test_serve_killed_between_receiving_and_delivering_still_delivers_exactly_once(
    client,
    trust_restored: None,
    live: Live,
    relayer: object,
    settings: Settings,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    kek: str,
    anvil: LocalChain,
    tmp_path: Path,
) -> None:
    """No processor runs in this test process: only the `serve` subprocesses act on events."""
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    first = await buy(client, customer, token_amount="70")
    second = await buy(client, customer, token_amount="30")
    for payment in (first, second):
        live.tap.held.add(payment["paymentIntentId"])  # the webhooks go to the subprocess
        await live.stripe.pay(payment["paymentIntentId"])
    first_event = await live.tap.wait_for("payment_intent.succeeded", first["paymentIntentId"])
    second_event = await live.tap.wait_for("payment_intent.succeeded", second["paymentIntentId"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serve_env(settings, kek=kek, anvil=anvil, data_dir=tmp_path, port=port)
    log = tmp_path / "serve.log"

    async def post(delivery: Delivery) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            return await http.post(
                f"{url}/webhooks/stripe",
                content=delivery.body,
                headers={"Stripe-Signature": delivery.signature},
            )

    # 1. The event is received and stored, and the process dies before any delivery: its
    #    processor is off, so the kill lands exactly in that window.
    with serve_process({**env, "OVPP_ONRAMP_PROCESSOR_IN_SERVE": "false"}, log) as serve:
        await wait_ready(serve, url, log)
        response = await post(first_event)
        assert response.status_code == 200 and response.json()["duplicate"] is False
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()
    async with services.db.session() as session:
        stored = (
            await session.execute(
                select(StripeEvent).where(StripeEvent.stripe_event_id == first_event.event_id)
            )
        ).scalar_one_or_none()
    assert stored is not None, tail(log)
    assert stored.processed_at is None
    assert (await payment_row(services, first["id"])).status == "REQUIRES_PAYMENT"
    assert await deliveries_of(services, first["paymentIntentId"]) == []
    assert chain.ovpp_of(customer.address) == 0

    # 2. Restarted: the stored event is picked up and delivered. Then the second payment's
    #    event arrives and the process is killed at once, wherever its processor then is.
    with serve_process(env, log) as serve:
        await wait_ready(serve, url, log)
        await wait_delivered(services, first["id"])
        assert chain.ovpp_of(customer.address) == 70 * OVPP
        assert (await post(first_event)).json()["duplicate"] is True
        assert (await post(second_event)).status_code == 200
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait()

    # 3. Restarted again: whatever was done before the kill is not done twice.
    with serve_process(env, log) as serve:
        await wait_ready(serve, url, log)
        await wait_delivered(services, second["id"])
        for event in (first_event, second_event):
            assert (await post(event)).json()["duplicate"] is True
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=20) == 0, tail(log)

    assert chain.ovpp_of(customer.address) == 100 * OVPP
    for payment in (first, second):
        assert len(await deliveries_of(services, payment["paymentIntentId"])) == 1
        live.tap.held.discard(payment["paymentIntentId"])


async def test_reconcile_lists_an_undelivered_payment_then_reports_zero_mismatches(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    cli_env: dict[str, str],
) -> None:
    """Runs last in this file: every payment the tests above made on this backend is checked."""
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token_amount="15")
    pi = payment["paymentIntentId"]
    live.tap.held.add(pi)  # the webhook is lost: Stripe has the money, we sent nothing
    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)

    lost = await asyncio.to_thread(ovpp_wallet, cli_env, "onramp", "reconcile")
    assert lost.returncode == 1, lost.stdout + lost.stderr
    assert f"MISMATCH {pi} (payment {payment['id']}): paid but not delivered" in lost.stdout
    # A window: the last day holds this payment; a window of no days holds nothing.
    recent = await asyncio.to_thread(ovpp_wallet, cli_env, "onramp", "reconcile", "--days", "1")
    assert recent.returncode == 1 and f"MISMATCH {pi} " in recent.stdout, recent.stdout
    assert recent.stdout.strip().splitlines()[-1] == lost.stdout.strip().splitlines()[-1]
    empty = await asyncio.to_thread(ovpp_wallet, cli_env, "onramp", "reconcile", "--days", "0")
    assert empty.returncode == 0, empty.stdout + empty.stderr
    assert empty.stdout.strip().splitlines()[-1].startswith("0 succeeded PaymentIntents checked")

    live.tap.held.discard(pi)
    assert (await live.deliver(succeeded)).status_code == 200  # Stripe's retry arrives
    await wait_payment(client, customer, payment["id"], "DELIVERED")
    clean = await asyncio.to_thread(ovpp_wallet, cli_env, "onramp", "reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "MISMATCH" not in clean.stdout and "repaired  " not in clean.stdout
    # Payments whose money went back are read again from Stripe: none had anything to repair.
    [rechecked] = [line for line in clean.stdout.splitlines() if "read again from Stripe" in line]
    assert rechecked.endswith(": 0 repaired"), clean.stdout
    summary = clean.stdout.strip().splitlines()[-1]
    assert int(summary.split()[0]) >= 1, clean.stdout
    assert summary.endswith("0 in flight, 0 mismatches"), clean.stdout
