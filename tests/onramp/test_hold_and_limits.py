"""Review H6, on both databases: tokens bought by card are held (they pay fees and enrollments
and go to this backend's wallets, but cannot leave for an outside address before the hold
ends), and each customer's card payments stay within a limit per 24 hours and per 30 days,
refused before any PaymentIntent exists. The customer sees both in ``viewer.wallet``. The
hold follows the tokens to another wallet of this backend: a second account is no way out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.db import utc_now
from onramp.models import OnrampPayment
from onramp.processor import RunningProcessor
from relayer import repository
from relayer.runner import RunningRelayer
from tests.support.enrollment import add_device, enroll, program_id, wait_enrollment
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.onramp import CREATE, OVPP, QUOTE, USDC, Live, buy, payment_row, wait_payment
from tests.support.relayer_pause import relayer_paused
from tests.support.transfers import QUOTE as QUOTE_TRANSFER
from tests.support.transfers import jobs_of, quote, send
from tests.support.wallets import (
    ChainReader,
    Customer,
    fresh_address,
    new_customer,
    wait_for_status,
)
from wallet.models import Wallet

WALLET = """
{ viewer { wallet {
  held { token { symbol } amount until }
  cardLimits { currency perDay perDayLeft per30Days per30DaysLeft }
} } }
"""


async def wallet_view(client, customer: Customer) -> dict[str, Any]:
    body = await gql(client, WALLET, token=customer.token)
    assert "errors" not in body, body
    return body["data"]["viewer"]["wallet"]


def shown(moment: datetime) -> str:
    """A moment as the hold's refusal names it: UTC, to the second, rounded up."""
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def bought_and_delivered(
    client, live: Live, customer: Customer, **amounts: str
) -> dict[str, Any]:
    payment = await buy(client, customer, **amounts)
    await live.stripe.pay(payment["paymentIntentId"])
    return await wait_payment(client, customer, payment["id"], "DELIVERED")


async def move_back(services: Services, payment_id: str, *, column: str, hours: float) -> None:
    """Pretend the payment was made (``created_at``) or delivered (``delivered_at``) ``hours``
    earlier than it was."""
    row = await payment_row(services, payment_id)
    moment = getattr(row, column) - timedelta(hours=hours)
    async with services.db.session() as session:
        await session.execute(
            update(OnrampPayment).where(OnrampPayment.id == payment_id).values({column: moment})
        )


async def intents_of(live: Live, customer: Customer) -> list[dict[str, Any]]:
    """The PaymentIntents made at (local) Stripe for the customer's wallet."""
    return await live.stripe.payment_intents_with_metadata("ovpp_wallet", customer.address)


async def payments_of_wallet(services: Services, address: str) -> int:
    async with services.db.session() as session:
        statement = (
            select(func.count())
            .select_from(OnrampPayment)
            .join(Wallet, Wallet.id == OnrampPayment.wallet_id)
            .where(Wallet.address == address)
        )
        return int((await session.execute(statement)).scalar_one())


async def test_card_bought_tokens_cannot_leave_for_an_outside_address_until_the_hold_ends(
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
    neighbour = await new_customer(client, test_issuer, deployer, contracts)
    outside = fresh_address()
    one = {"token": "STABLECOIN", "amount": "1", "feeToken": "STABLECOIN"}
    # A quote made while nothing is held yet: the transfer itself must refuse too.
    early = await quote(client, customer.token, to=outside, **one)

    payment = await bought_and_delivered(
        client, live, customer, token="STABLECOIN", fiat_amount="20"
    )
    assert chain.usd_of(customer.address) == 19_100_000
    delivered_at = (await payment_row(services, payment["id"])).delivered_at
    until = delivered_at + timedelta(hours=services.settings.onramp_hold_hours)

    view = await wallet_view(client, customer)
    assert [(h["token"]["symbol"], h["amount"]) for h in view["held"]] == [("USDC", "19.1")]
    assert datetime.fromisoformat(view["held"][0]["until"]) == until
    assert view["cardLimits"] == {
        "currency": "USD",
        "perDay": "1000",
        "perDayLeft": "980",
        "per30Days": "3000",
        "per30DaysLeft": "2980",
    }

    # To an outside address: the quote refuses, and so does the transfer; nothing is queued.
    refused = await gql(
        client, QUOTE_TRANSFER, {"input": {"to": outside, **one}}, token=customer.token
    )
    assert error_codes(refused) == ["POLICY_VIOLATION"], refused
    assert shown(until) in refused["errors"][0]["message"], refused
    sent = await send(client, customer.token, quote_id=early["id"], to=outside, **one)
    assert (sent["__typename"], sent["rule"]) == ("PolicyViolation", "ONRAMP_HOLD"), sent
    assert shown(until) in sent["message"], sent
    assert await jobs_of(services, customer.address) == []

    # To another customer's wallet of this backend: allowed, its fee paid from the held tokens.
    inside = await quote(client, customer.token, to=neighbour.address, **one)
    sent = await send(client, customer.token, quote_id=inside["id"], to=neighbour.address, **one)
    assert sent["__typename"] == "Transaction", sent
    assert (await wait_for_status(client, customer.token, sent["id"]))["status"] == "CONFIRMED"
    assert chain.usd_of(neighbour.address) == 1 * USDC

    # Once the hold has ended: the outside address too.
    await move_back(
        services, payment["id"], column="delivered_at", hours=services.settings.onramp_hold_hours
    )
    assert (await wallet_view(client, customer))["held"] == []
    later = await quote(client, customer.token, to=outside, **one)
    sent = await send(client, customer.token, quote_id=later["id"], to=outside, **one)
    assert sent["__typename"] == "Transaction", sent
    assert (await wait_for_status(client, customer.token, sent["id"]))["status"] == "CONFIRMED"
    assert chain.usd_of(outside) == 1 * USDC


async def test_only_the_part_not_bought_by_card_may_leave_while_the_hold_lasts(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts, stablecoin=3 * USDC)
    await bought_and_delivered(client, live, customer, token="STABLECOIN", fiat_amount="20")
    outside = fresh_address()
    fee = {"token": "STABLECOIN", "feeToken": "STABLECOIN"}

    refused = await gql(
        client,
        QUOTE_TRANSFER,
        {"input": {"to": outside, "amount": "3.01", **fee}},
        token=customer.token,
    )
    assert error_codes(refused) == ["POLICY_VIOLATION"], refused
    assert "at most 3 USDC can go to an address outside" in refused["errors"][0]["message"]
    # Its own 3 USDC may leave; the fee comes out of the held ones.
    made = await quote(client, customer.token, to=outside, amount="3", **fee)
    sent = await send(client, customer.token, quote_id=made["id"], to=outside, amount="3", **fee)
    assert sent["__typename"] == "Transaction", sent
    assert (await wait_for_status(client, customer.token, sent["id"]))["status"] == "CONFIRMED"
    assert chain.usd_of(outside) == 3 * USDC


def held_of(view: dict[str, Any]) -> list[tuple[str, str, datetime]]:
    return [
        (h["token"]["symbol"], h["amount"], datetime.fromisoformat(h["until"]))
        for h in view["held"]
    ]


async def test_the_hold_follows_card_bought_tokens_to_another_wallet_of_this_backend(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A buyer moves held tokens to a second account (allowed: one of this backend's wallets);
    from there they still cannot leave before the hold ends, while the second account's own
    tokens can."""
    chain = ChainReader(deployer, contracts)
    buyer = await new_customer(client, test_issuer, deployer, contracts)
    second = await new_customer(client, test_issuer, deployer, contracts, stablecoin=3 * USDC)
    outside = fresh_address()
    fee = {"token": "STABLECOIN", "feeToken": "STABLECOIN"}
    early = await quote(client, second.token, to=outside, amount="4", **fee)

    payment = await bought_and_delivered(client, live, buyer, token="STABLECOIN", fiat_amount="20")
    until = (await payment_row(services, payment["id"])).delivered_at + timedelta(
        hours=services.settings.onramp_hold_hours
    )
    inside = await quote(client, buyer.token, to=second.address, amount="10", **fee)
    sent = await send(
        client, buyer.token, quote_id=inside["id"], to=second.address, amount="10", **fee
    )
    assert sent["__typename"] == "Transaction", sent
    assert (await wait_for_status(client, buyer.token, sent["id"]))["status"] == "CONFIRMED"
    assert chain.usd_of(second.address) == 13 * USDC

    # The hold moved with the 10 USDC: the second account sees it, the buyer's is that much less.
    assert held_of(await wallet_view(client, second)) == [("USDC", "10", until)]
    assert held_of(await wallet_view(client, buyer)) == [("USDC", "9.1", until)]

    # From the second account the held tokens cannot leave, by quote or transfer; nothing queued.
    refused = await gql(
        client,
        QUOTE_TRANSFER,
        {"input": {"to": outside, "amount": "3.01", **fee}},
        token=second.token,
    )
    assert error_codes(refused) == ["POLICY_VIOLATION"], refused
    assert shown(until) in refused["errors"][0]["message"], refused
    assert "at most 3 USDC can go to an address outside" in refused["errors"][0]["message"]
    sent = await send(client, second.token, quote_id=early["id"], to=outside, amount="4", **fee)
    assert (sent["__typename"], sent["rule"]) == ("PolicyViolation", "ONRAMP_HOLD"), sent
    assert shown(until) in sent["message"], sent
    assert await jobs_of(services, second.address) == []

    # Its own 3 USDC are not held: they leave (the fee out of the held ones).
    own = await quote(client, second.token, to=outside, amount="3", **fee)
    sent = await send(client, second.token, quote_id=own["id"], to=outside, amount="3", **fee)
    assert sent["__typename"] == "Transaction", sent
    assert (await wait_for_status(client, second.token, sent["id"]))["status"] == "CONFIRMED"
    assert chain.usd_of(outside) == 3 * USDC


async def test_a_hold_moved_by_a_transfer_that_failed_goes_back_to_the_sender(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The hold moves in the transaction that queues the transfer; if that job fails, its
    tokens never moved: the recipient's own funds are not held, the sender's hold is whole."""
    buyer = await new_customer(client, test_issuer, deployer, contracts)
    second = await new_customer(client, test_issuer, deployer, contracts)
    fee = {"token": "STABLECOIN", "feeToken": "STABLECOIN", "amount": "5"}
    payment = await bought_and_delivered(client, live, buyer, token="STABLECOIN", fiat_amount="20")
    until = (await payment_row(services, payment["id"])).delivered_at + timedelta(
        hours=services.settings.onramp_hold_hours
    )
    async with relayer_paused(relayer, services):
        made = await quote(client, buyer.token, to=second.address, **fee)
        sent = await send(client, buyer.token, quote_id=made["id"], to=second.address, **fee)
        assert sent["__typename"] == "Transaction", sent
        assert held_of(await wallet_view(client, second)) == [("USDC", "5", until)]
        assert held_of(await wallet_view(client, buyer)) == [("USDC", "14.1", until)]
        async with services.db.session() as session:
            await repository.fail_job(session, sent["id"], error="test: never sent", now=utc_now())
    assert (await wait_for_status(client, buyer.token, sent["id"]))["status"] == "FAILED"
    assert held_of(await wallet_view(client, second)) == []
    assert held_of(await wallet_view(client, buyer)) == [("USDC", "19.1", until)]


async def test_card_bought_ovpp_still_pays_an_enrollment_fee_while_held(
    client,
    live: Live,
    processor: RunningProcessor,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, demo_issuer, deployer, contracts)
    await bought_and_delivered(client, live, customer, token_amount="20")
    assert [h["amount"] for h in (await wallet_view(client, customer))["held"]] == ["20"]

    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    result = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert result["__typename"] == "Enrollment", result
    assert (await wait_enrollment(client, customer.token, result["id"]))["status"] == "ACTIVE"
    assert ChainReader(deployer, contracts).ovpp_of(customer.address) <= 15 * OVPP  # fee paid


async def open_payment(client, customer: Customer, fiat_amount: str) -> dict[str, Any]:
    """createOnrampPayment's answer for a fresh quote of ``fiat_amount`` USD of stablecoin."""
    amounts = {"token": "STABLECOIN", "fiatAmount": fiat_amount}
    body = await gql(client, QUOTE, {"input": {"currency": "USD", **amounts}}, token=customer.token)
    quoted = body["data"]["quoteOnramp"]
    assert quoted["__typename"] == "OnrampQuote", body
    body = await gql(
        client,
        CREATE,
        {
            "input": {
                "currency": "USD",
                "quoteId": quoted["id"],
                "idempotencyKey": str(uuid.uuid4()),
                **amounts,
            }
        },
        token=customer.token,
    )
    assert "errors" not in body, body
    return body["data"]["createOnrampPayment"]


@pytest.fixture
def small_limits(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Card limits of 30 USD per 24 hours and 50 USD per 30 days, for this test only."""
    limits = {"onramp_customer_limit_day": "30", "onramp_customer_limit_30_days": "50"}
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update=limits))


async def test_card_limits_refuse_before_any_payment_intent_exists(
    client,
    live: Live,
    small_limits: None,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    first = await open_payment(client, customer, "20")
    assert first["__typename"] == "OnrampPayment", first  # unpaid: it counts all the same

    over_day = await open_payment(client, customer, "15")
    assert over_day["__typename"] == "OnrampUnavailable", over_day
    assert over_day["message"] == (
        "card purchases are limited to 30 USD per 24 hours per customer: 10 USD is left, "
        "15 USD was asked; nothing was charged"
    )
    assert len(await intents_of(live, customer)) == 1
    assert await payments_of_wallet(services, customer.address) == 1
    limits = (await wallet_view(client, customer))["cardLimits"]
    assert (limits["perDayLeft"], limits["per30DaysLeft"]) == ("10", "30")

    # A day later the daily window is free again, the 30-day one is not.
    await move_back(services, first["id"], column="created_at", hours=25)
    second = await open_payment(client, customer, "20")
    assert second["__typename"] == "OnrampPayment", second
    await move_back(services, second["id"], column="created_at", hours=25)
    over_month = await open_payment(client, customer, "15")
    assert over_month["__typename"] == "OnrampUnavailable", over_month
    assert "50 USD per 30 days per customer: 10 USD is left" in over_month["message"]
    assert len(await intents_of(live, customer)) == 2
    assert await payments_of_wallet(services, customer.address) == 2


async def test_two_concurrent_payments_cannot_both_pass_the_limit(
    client,
    live: Live,
    small_limits: None,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    answers = await asyncio.gather(*(open_payment(client, customer, "20") for _ in range(2)))
    assert sorted(a["__typename"] for a in answers) == ["OnrampPayment", "OnrampUnavailable"]
    assert len(await intents_of(live, customer)) == 1
    assert await payments_of_wallet(services, customer.address) == 1
