"""Card refunds that fail after Stripe accepted them, end to end on both databases.

Stripe can fail a card refund days after accepting it (the card was closed, lost or stolen): the
refund's status becomes ``failed`` with a ``failure_reason``, the charge's ``amount_refunded``
no longer counts it, its money goes back to the platform's balance, and Stripe sends
``charge.refund.updated`` (and ``refund.failed``). localstripe cannot fail a refund by itself,
so ``devsupport.local_stripe`` adds ``POST /v1/refunds/{id}/_fail``, which fails one the way Stripe
does and has localstripe send both events, signed, to the app's webhook route. Everything else
is the real thing: the app served over HTTP, its processor, the relayer, the chain, and the
gateway reading localstripe.

One check calls ``apply_intent_state`` directly: two reads of Stripe applied in the wrong order
(a processor's read taken before the refund failed, applied after a fresher one), a race no
webhook can stage on demand.

Runs after tests/onramp/test_onramp.py, whose last test expects ``reconcile`` to find no
mismatch on this backend: the payments left REFUND_FAILED here are mismatches until an operator
settles them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from decimal import Decimal

import httpx
import pytest
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from devsupport.local_stripe import LocalStripe
from onramp.events import apply_intent_state
from onramp.models import OnrampPayment, PaymentStatus
from onramp.processor import RunningProcessor
from onramp.reconcile import reconcile
from onramp.stripe_gateway import require_gateway
from programs import card
from relayer.runner import RunningRelayer
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.cli import ovpp_wallet
from tests.support.issuer import TestIssuer
from tests.support.metrics import scrape, value
from tests.support.onramp import (
    FAILURE_EVENTS,
    OVPP,
    Live,
    buy,
    deliveries_of,
    dispute_of,
    enrollment_once_final,
    fail_refund,
    open_card_enrollment,
    payment_row,
    post_signed_event,
    settle,
    undelivered_and_refunded,
    wait_payment,
    wait_processed,
)
from tests.support.stripe import signed_event
from tests.support.wallets import ChainReader, new_customer


async def refund_failures_counted(client: httpx.AsyncClient, services: Services) -> None:
    """``/metrics`` counts exactly the REFUND_FAILED payments of the database."""
    samples = await scrape(client)
    async with services.db.session() as session:
        in_database = (
            await session.execute(
                select(func.count()).where(OnrampPayment.status == "REFUND_FAILED")
            )
        ).scalar_one()
    assert in_database >= 1
    assert value(samples, "ovpp_onramp_refunds_failed") == in_database


# -- tests ---------------------------------------------------------------------------------------


async def test_an_undelivered_payment_whose_refund_fails_is_refund_failed_and_never_refunded_again(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    localstripe: LocalStripe,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="onramp.events")
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await undelivered_and_refunded(
        client, live, relayer, services, customer, token_amount="40"
    )
    pi = payment["paymentIntentId"]
    refunded_charge = (await live.stripe.payment_intent(pi))["latest_charge"]
    [refund] = await live.stripe.refunds(pi)
    charged = refunded_charge["amount"]
    assert refund["amount"] == charged == int(Decimal(payment["fiatAmount"]) * 100)

    # Days later the card network refuses the refund; Stripe says so with two webhooks.
    await fail_refund(localstripe, refund["id"], "expired_or_canceled_card")
    updated, failed = [await live.tap.wait_for(kind, pi) for kind in FAILURE_EVENTS]
    assert (await live.stripe.payment_intent(pi))["latest_charge"]["amount_refunded"] == 0
    live.tap.held.discard(pi)
    assert (await live.deliver(updated)).status_code == 200
    await wait_processed(services, [updated.event_id])

    node = await wait_payment(client, customer, payment["id"], "REFUND_FAILED")
    assert node["refundedAmount"] == "0", node
    assert node["refundFailedAmount"] == node["fiatAmount"] == payment["fiatAmount"], node
    assert node["clawbackRequired"] is False and node["disputed"] is False
    assert node["error"].startswith(
        f"the refund failed (expired_or_canceled_card): {payment['fiatAmount']} USD could not be "
        "returned to the card"
    ), node
    assert "; rejected by the node" in node["error"], node  # why nothing was sent, still there
    assert node["deliveryTransaction"]["status"] == "FAILED"
    row = await payment_row(services, payment["id"])
    assert (row.status, row.refunded_amount, row.refund_failed_amount) == (
        "REFUND_FAILED",
        0,
        charged,
    )
    assert any(
        record.levelno == logging.ERROR and pi in record.getMessage() for record in caplog.records
    ), caplog.text
    await refund_failures_counted(client, services)

    # Said again (a redelivery, the other event, a stale charge.refunded, a processor's read
    # from before the failure): nothing moves, and the refused card is never refunded again.
    assert (await live.deliver(updated)).status_code == 200
    assert (await live.deliver(failed)).status_code == 200
    body, signature = signed_event(
        STRIPE_WEBHOOK_SECRET, event_type="charge.refunded", obj=refunded_charge
    )
    assert (await live.post(body, signature)).status_code == 200
    await wait_processed(services, [failed.event_id, json.loads(body)["id"]])
    fresh = await require_gateway(services.stripe).payment_intent(pi)
    assert (fresh.amount_refunded, fresh.amount_refund_failed) == (0, charged)
    stale = replace(fresh, amount_refunded=charged, amount_refund_failed=0)
    async with services.db.session() as session:
        assert await apply_intent_state(session, payment_id=payment["id"], state=stale) is None
    await settle()
    again = await payment_row(services, payment["id"])
    assert (again.status, again.refunded_amount, again.refund_failed_amount, again.error) == (
        row.status,
        row.refunded_amount,
        row.refund_failed_amount,
        row.error,
    )
    assert len(await live.stripe.refunds(pi)) == 1
    assert len(await deliveries_of(services, pi)) == 1
    assert chain.ovpp_of(customer.address) == 0


@pytest.mark.parametrize("disputed", [False, True], ids=["refund only", "refund and dispute"])
async def test_a_delivered_payment_whose_refund_fails_needs_no_clawback_unless_disputed(
    disputed: bool,
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    localstripe: LocalStripe,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token_amount="10")
    pi = payment["paymentIntentId"]
    await live.stripe.pay(pi)
    await wait_payment(client, customer, payment["id"], "DELIVERED")

    # An operator refunds it after the tokens were sent: flagged for clawback.
    await live.stripe.refund(pi)
    intent = await live.stripe.payment_intent(pi)
    charge = intent["latest_charge"]
    await post_signed_event(live, services, event_type="charge.refunded", obj=charge)
    if disputed:
        await post_signed_event(
            live, services, event_type="charge.dispute.created", obj=dispute_of(intent)
        )
    node = await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert node["clawbackRequired"] is True and node["refundedAmount"] == node["fiatAmount"]

    # The refund fails: no money went back, so there is nothing to claw back, unless the
    # customer's bank disputes the charge.
    [refund] = await live.stripe.refunds(pi)
    await fail_refund(localstripe, refund["id"], "lost_or_stolen_card")
    events = [await live.tap.wait_for(kind, pi) for kind in FAILURE_EVENTS]
    await wait_processed(services, [event.event_id for event in events])
    node = await wait_payment(client, customer, payment["id"], "DELIVERED")
    assert node["clawbackRequired"] is disputed, node
    assert node["disputed"] is disputed
    assert node["refundedAmount"] == "0" and node["refundFailedAmount"] == node["fiatAmount"]
    row = await payment_row(services, payment["id"])
    assert (row.clawback_required, row.refunded_amount, row.refund_failed_amount) == (
        disputed,
        0,
        charge["amount"],
    )

    # A read of Stripe from before the failure, applied late, flags nothing again.
    fresh = await require_gateway(services.stripe).payment_intent(pi)
    stale = replace(fresh, amount_refunded=charge["amount"], amount_refund_failed=0)
    async with services.db.session() as session:
        await apply_intent_state(session, payment_id=payment["id"], state=stale)
    assert (await payment_row(services, payment["id"])).clawback_required is disputed
    assert len(await deliveries_of(services, pi)) == 1
    assert chain.ovpp_of(customer.address) == 10 * OVPP  # the customer keeps the tokens


async def test_reconcile_catches_a_refund_failure_whose_webhooks_were_lost(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    localstripe: LocalStripe,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    cli_env: dict[str, str],
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await undelivered_and_refunded(
        client, live, relayer, services, customer, token_amount="25"
    )
    pi = payment["paymentIntentId"]
    [refund] = await live.stripe.refunds(pi)
    await fail_refund(localstripe, refund["id"], "unknown")
    lost = [await live.tap.wait_for(kind, pi) for kind in FAILURE_EVENTS]  # held: never arrive
    await settle()
    assert (await payment_row(services, payment["id"])).status == "REFUNDED"  # nobody knows

    # The operator's command: it repairs the payment in the database and says so.
    repairing = await asyncio.to_thread(ovpp_wallet, cli_env, "onramp", "reconcile")
    assert repairing.returncode == 1, repairing.stdout + repairing.stderr
    assert f"repaired  {pi}: " in repairing.stdout, repairing.stdout
    assert f"MISMATCH {pi} (payment {payment['id']}): " in repairing.stdout, repairing.stdout
    [rechecked] = [line for line in repairing.stdout.splitlines() if "read again from" in line]
    assert int(rechecked.split()[0]) >= 1 and not rechecked.endswith(": 0 repaired"), rechecked
    row = await payment_row(services, payment["id"])
    assert (row.status, row.refunded_amount, row.refund_failed_amount) == (
        "REFUND_FAILED",
        0,
        refund["amount"],
    )
    node = await wait_payment(client, customer, payment["id"], "REFUND_FAILED")
    assert node["error"].startswith("the refund failed (unknown): "), node

    # Reconciling again repairs nothing more and still reports the money owed; the lost
    # webhooks, redelivered by Stripe at last, change nothing either.
    again = await reconcile(services)
    assert pi not in again.repaired
    [mismatch] = [m for m in again.mismatches if m.payment_intent_id == pi]
    assert mismatch.payment_id == payment["id"]
    assert mismatch.problem.startswith("paid, nothing delivered, and the refund failed"), mismatch
    assert f"MISMATCH {pi} (payment {payment['id']}): {mismatch.problem}\n" in repairing.stdout
    live.tap.held.discard(pi)
    for event in lost:
        assert (await live.deliver(event)).status_code == 200
    await wait_processed(services, [event.event_id for event in lost])
    await settle()
    assert (await payment_row(services, payment["id"])).error == row.error
    assert len(await live.stripe.refunds(pi)) == 1

    # An operator refunds it again and this time the card takes it: REFUNDED, with why the
    # tokens were not delivered as the error again, and no longer a mismatch.
    await live.stripe.refund(pi)
    charge = (await live.stripe.payment_intent(pi))["latest_charge"]
    await post_signed_event(live, services, event_type="charge.refunded", obj=charge)
    node = await wait_payment(client, customer, payment["id"], "REFUNDED")
    assert node["refundedAmount"] == node["fiatAmount"] == node["refundFailedAmount"], node
    assert node["error"].startswith("rejected by the node"), node
    settled = await reconcile(services)
    assert not [m for m in settled.mismatches if m.payment_intent_id == pi]


async def test_a_card_paid_enrollment_whose_fee_payment_s_refund_fails_fails_saying_so(
    client,
    live: Live,
    processor: RunningProcessor,
    registry_demo,
    services: Services,
    localstripe: LocalStripe,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The fee is paid, refunded (an operator, in Stripe) before its OVPP was sent, and the
    refund fails, all before the processor hears of it: the payment goes straight to
    REFUND_FAILED, and the enrollment waiting for its fee fails saying where the money is."""
    chain = ChainReader(deployer, contracts)
    opened = await open_card_enrollment(
        client, services, issuer=demo_issuer, deployer=deployer, contracts=contracts
    )
    customer, pi = opened.customer, opened.payment_intent_id
    live.tap.held.add(pi)
    await live.stripe.pay(pi)
    succeeded = await live.tap.wait_for("payment_intent.succeeded", pi)
    await live.stripe.refund(pi)
    [refund] = await live.stripe.refunds(pi)
    await fail_refund(localstripe, refund["id"], "lost_or_stolen_card")
    failure_events = [await live.tap.wait_for(kind, pi) for kind in FAILURE_EVENTS]
    live.tap.held.discard(pi)
    for event in (succeeded, *failure_events):
        assert (await live.deliver(event)).status_code == 200
    await wait_processed(services, [event.event_id for event in (succeeded, *failure_events)])

    node = await wait_payment(client, customer, opened.fee_payment["id"], "REFUND_FAILED")
    assert node["refundedAmount"] == "0" and node["refundFailedAmount"] == node["fiatAmount"]
    assert node["error"].startswith("the refund failed (lost_or_stolen_card): "), node
    row = await enrollment_once_final(services, opened.enrollment["id"], timeout=30)
    assert (row.status, row.error) == ("FAILED", card.GIVEN_UP[PaymentStatus.REFUND_FAILED.value])
    assert await deliveries_of(services, pi) == []
    assert chain.ovpp_of(customer.address) == 0
    assert len(await live.stripe.refunds(pi)) == 1
