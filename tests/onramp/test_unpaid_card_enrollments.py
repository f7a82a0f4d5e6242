"""A card-paid enrollment whose fee is never paid does not block its device forever (review,
issue 16): the customer's ``unenroll`` cancels it, and the onramp processor cancels it once
``OVPP_CARD_ENROLLMENT_PAYMENT_MINUTES`` have passed unpaid; either way its PaymentIntent is
canceled at (local) Stripe first, nothing is charged or queued, and the device can enroll
again. A payment Stripe has taken is never canceled: it is delivered and connects as usual.
On both databases, with the real localstripe, anvil and onramp processor."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.db import utc_now
from onramp.models import OnrampPayment
from onramp.processor import RunningProcessor
from programs import card_cancel
from programs.models import Enrollment as EnrollmentRow
from relayer.models import RelayTransaction
from relayer.runner import RunningRelayer
from tests.support.enrollment import UNENROLL
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.onramp import (
    CARD_ENROLL,
    CardEnrollment,
    Live,
    deliveries_of,
    enrollment_once_final,
    open_card_enrollment,
    settle,
    wait_payment,
)
from tests.support.relayer_pause import relayer_paused
from tests.support.wallets import ChainReader


async def unenroll(
    client: httpx.AsyncClient, opened: CardEnrollment, *, key: str | None = None
) -> dict[str, Any]:
    body = await gql(
        client,
        UNENROLL,
        {
            "input": {
                "enrollmentId": opened.enrollment["id"],
                "idempotencyKey": key or str(uuid.uuid4()),
            }
        },
        token=opened.customer.token,
    )
    assert "errors" not in body, body
    return body["data"]["unenroll"]


async def enroll_again(client: httpx.AsyncClient, opened: CardEnrollment) -> dict[str, Any]:
    """The same device, program and payment method under a new idempotency key."""
    variables = {"input": {**opened.variables["input"], "idempotencyKey": str(uuid.uuid4())}}
    body = await gql(client, CARD_ENROLL, variables, token=opened.customer.token)
    assert "errors" not in body, body
    return body["data"]["enroll"]


async def enrollment_row(services: Services, enrollment_id: str) -> EnrollmentRow:
    async with services.db.session() as session:
        row = await session.get(EnrollmentRow, enrollment_id)
    assert row is not None
    return row


async def jobs_of(services: Services, customer_id: str) -> int:
    async with services.db.session() as session:
        statement = (
            select(func.count())
            .select_from(RelayTransaction)
            .where(RelayTransaction.customer_id == customer_id)
        )
        return int((await session.execute(statement)).scalar_one())


async def canceled_uncharged(live: Live, payment_intent_id: str) -> None:
    """The PaymentIntent is canceled at Stripe and no card was ever charged for it."""
    intent = await live.stripe.payment_intent(payment_intent_id)
    assert intent["status"] == "canceled" and intent["latest_charge"] is None, intent


async def opened_long_ago(
    services: Services, payment_id: str, *, minutes: int, looked_at_minutes: int | None = None
) -> None:
    """Pretend the fee payment was opened ``minutes`` ago and last looked at (by the webhook
    or a re-read) ``looked_at_minutes`` ago (as long ago as it was opened by default)."""
    now = utc_now()
    quiet = minutes if looked_at_minutes is None else looked_at_minutes
    async with services.db.session() as session:
        await session.execute(
            update(OnrampPayment)
            .where(OnrampPayment.id == payment_id)
            .values(
                created_at=now - timedelta(minutes=minutes),
                updated_at=now - timedelta(minutes=quiet),
            )
        )


async def test_unenrolling_an_unpaid_card_enrollment_cancels_its_payment_and_frees_the_device(
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
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    enrollment, pi = opened.enrollment, opened.payment_intent_id

    # While it waits for its fee, a second enrollment is refused, saying what can be done.
    refused = await enroll_again(client, opened)
    assert refused["__typename"] == "InvalidInput" and refused["field"] == "deviceId"
    minutes = services.settings.card_enrollment_payment_minutes
    assert refused["message"] == (
        "this device already has an enrollment in this program (FEE_PENDING): pay its fee "
        "with the card payment it opened (it then connects by itself), or unenroll it to "
        f"cancel that payment; unpaid, it is canceled by itself {minutes} minutes after it "
        "was opened"
    )

    key = str(uuid.uuid4())
    left = await unenroll(client, opened, key=key)
    assert left["__typename"] == "Enrollment", left
    assert left["id"] == enrollment["id"] and left["status"] == "UNENROLLED"
    assert left["error"] == card_cancel.UNENROLLED_UNPAID
    await canceled_uncharged(live, pi)
    node = await wait_payment(client, opened.customer, opened.fee_payment["id"], "CANCELED")
    assert node["clientSecret"] is None and node["error"] == card_cancel.UNENROLLED_UNPAID
    row = await enrollment_row(services, enrollment["id"])
    assert row.unenroll_idempotency_key == key and row.relay_transaction_id is None
    # Nothing queued.
    assert await jobs_of(services, row.customer_id) == 0
    assert chain.ovpp_of(opened.customer.address) == 0

    # A second unenroll, under the same key or another, answers the same.
    assert await unenroll(client, opened, key=key) == left
    assert await unenroll(client, opened) == left
    await settle()  # the processor's follower does not touch it again
    assert (await enrollment_row(services, enrollment["id"])).status == "UNENROLLED"

    # The device can join the program again.
    again = await enroll_again(client, opened)
    assert again["__typename"] == "Enrollment" and again["status"] == "FEE_PENDING", again
    assert again["id"] != enrollment["id"]


async def test_unenrolling_once_the_fee_is_paid_is_refused_and_changes_nothing(
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
    """Stripe has taken the payment but its webhook is not here yet (the customer unenrolls at
    the moment the payment goes through): Stripe refuses the cancel, and the unenroll is
    refused with nothing changed. Once the payment is being delivered, the same. The
    enrollment then connects as usual."""
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    enrollment, pi = opened.enrollment, opened.payment_intent_id
    payment_id = opened.fee_payment["id"]
    live.tap.held.add(pi)
    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)

    refused = await unenroll(client, opened)
    assert refused["__typename"] == "InvalidInput" and refused["field"] == "enrollmentId"
    assert refused["message"].startswith(
        "the card payment is being paid or was paid, so it can no longer be canceled"
    ), refused
    assert (await enrollment_row(services, enrollment["id"])).status == "FEE_PENDING"
    await wait_payment(client, opened.customer, payment_id, "REQUIRES_PAYMENT")
    assert (await live.stripe.payment_intent(pi))["status"] == "succeeded"

    async with relayer_paused(relayer, services):
        live.tap.held.discard(pi)
        assert (await live.deliver(succeeded)).status_code == 200
        await wait_payment(client, opened.customer, payment_id, "DELIVERING")
        again = await unenroll(client, opened)
        assert again["__typename"] == "InvalidInput" and again["field"] == "enrollmentId"
        assert (await enrollment_row(services, enrollment["id"])).status == "FEE_PENDING"

    row = await enrollment_once_final(services, enrollment["id"], timeout=60)
    assert row.status == "ACTIVE", row.error
    assert await live.stripe.refunds(pi) == []


async def test_an_unpaid_card_enrollment_is_canceled_once_its_payment_window_passes(
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
    minutes = services.settings.card_enrollment_payment_minutes
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    enrollment, pi = opened.enrollment, opened.payment_intent_id

    await opened_long_ago(services, opened.fee_payment["id"], minutes=minutes - 1)
    processor.wake()
    await settle()  # within the window: nothing happens
    assert (await enrollment_row(services, enrollment["id"])).status == "FEE_PENDING"
    assert (await live.stripe.payment_intent(pi))["status"] == "requires_payment_method"

    await opened_long_ago(services, opened.fee_payment["id"], minutes=minutes + 1)
    processor.wake()
    row = await enrollment_once_final(services, enrollment["id"], timeout=30)
    assert row.status == "FAILED" and row.error == card_cancel.unpaid_in_time(minutes)
    assert row.relay_transaction_id is None
    await canceled_uncharged(live, pi)
    node = await wait_payment(client, opened.customer, opened.fee_payment["id"], "CANCELED")
    assert node["error"] == card_cancel.unpaid_in_time(minutes)
    assert await jobs_of(services, row.customer_id) == 0
    assert chain.ovpp_of(opened.customer.address) == 0

    # Unenrolling it now answers it as it is; the device can join again.
    left = await unenroll(client, opened)
    assert left["__typename"] == "Enrollment" and left["status"] == "FAILED", left
    again = await enroll_again(client, opened)
    assert again["__typename"] == "Enrollment" and again["status"] == "FEE_PENDING", again


async def test_the_payment_window_never_cancels_a_payment_stripe_has_taken(
    client,
    live: Live,
    processor: RunningProcessor,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The customer paid just as the window closed and the webhook is lost: the processor's
    cancel is refused by Stripe, the payment is recorded as Stripe says (PAID), delivered,
    and the enrollment connects. (Looked at two minutes ago: too recently for the lost
    webhook's re-read, so the cancel is what finds the payment taken.)"""
    minutes = services.settings.card_enrollment_payment_minutes
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    enrollment, pi = opened.enrollment, opened.payment_intent_id
    live.tap.held.add(pi)  # its webhooks never reach the app
    await live.stripe.pay(pi)
    await live.tap.wait_for("payment_intent.succeeded", pi)

    assert services.settings.onramp_reread_after_seconds > 120
    await opened_long_ago(
        services, opened.fee_payment["id"], minutes=minutes + 1, looked_at_minutes=2
    )
    processor.wake()
    row = await enrollment_once_final(services, enrollment["id"], timeout=60)
    assert row.status == "ACTIVE", row.error
    assert (await live.stripe.payment_intent(pi))["status"] == "succeeded"
    assert len(await deliveries_of(services, pi)) == 1
    assert await live.stripe.refunds(pi) == []
