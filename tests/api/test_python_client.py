"""The typed Python client (``clients/python/ovpp_client``) end to end against the app: it sends
the published operation documents and gets typed values back, checked on the chain."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
import uvicorn
from ovpp_client import (
    Device,
    Enrollment,
    InsufficientFunds,
    OnrampPayment,
    OnrampQuote,
    SiteAddress,
    Transaction,
    WalletApiError,
    WalletClient,
)

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from onramp.processor import RunningProcessor
from onramp.treasury import treasury_account
from tests.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET
from tests.support.activity import indexed
from tests.support.issuer import TestIssuer
from tests.support.ports import free_port
from tests.support.stripe import StripeTestClient, signed_event
from tests.support.wallets import ChainReader, fresh_address

OVPP = 10**18
USD = 10**6
SITE = SiteAddress(
    line1="1 Market St", city="San Francisco", region="CA", postal_code="94105", country="US"
)


async def signed_in(
    client, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook, **funds: int
) -> tuple[WalletClient, str]:
    """A new customer signed in through the typed client (the first call provisions the
    wallet), then funded on chain."""
    subject = f"client-{uuid.uuid4().hex[:12]}"
    token = test_issuer.mint(
        sub=subject, email=f"{subject}@example.com", scope="wallet:read wallet:sign"
    )
    wallet = WalletClient(client, access_token=token)
    address = (await wallet.viewer_balances()).address
    if funds.get("ovpp"):
        deployer.mint(token=contracts.ovpp_token, to=address, amount=funds["ovpp"])
    if funds.get("stablecoin"):
        deployer.mint(token=contracts.stablecoin, to=address, amount=funds["stablecoin"])
    return wallet, address


async def test_balances_quote_transfer_and_confirmation_through_the_typed_client(
    client,
    relayer,
    chain_indexer,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    wallet, address = await signed_in(
        client, test_issuer, deployer, contracts, ovpp=100 * OVPP, stablecoin=50 * USD
    )
    await indexed(services)
    viewer = await wallet.viewer_balances()
    assert viewer.address == address and viewer.email and viewer.email.startswith("client-")
    assert viewer.balance("OVPP").amount == Decimal(100)
    assert viewer.balance("OVPP").raw == 100 * OVPP
    assert viewer.balance("USDC").amount == Decimal(50)
    assert [token.symbol for token in await wallet.tokens()][:2] == ["OVPP", "USDC"]
    assert (await wallet.chain()).chain_id > 0

    recipient = fresh_address()
    quote = await wallet.quote_transfer(
        token="OVPP", to=recipient, amount=Decimal("12.5"), fee_token="STABLECOIN"
    )
    assert quote.fee_token.symbol == "USDC" and quote.fee_amount > 0 and not quote.sponsored
    key = f"send-{uuid.uuid4()}"
    sent = await wallet.transfer(
        token="OVPP",
        to=recipient,
        amount=Decimal("12.5"),
        fee_token="STABLECOIN",
        quote_id=quote.id,
        idempotency_key=key,
    )
    assert isinstance(sent, Transaction), sent
    confirmed = await wallet.wait_for_transaction(sent.id)
    assert confirmed.status == "CONFIRMED", confirmed
    assert confirmed.amount == Decimal("12.5") and confirmed.fee_amount == quote.fee_amount
    assert chain.receipt(confirmed.hash)["status"] == 1
    assert chain.ovpp_of(recipient) == 12_500_000_000_000_000_000

    await indexed(services)
    after = await wallet.viewer_balances()
    assert after.balance("OVPP").amount == Decimal("87.5")
    assert after.balance("USDC").amount == Decimal(50) - quote.fee_amount
    replay = await wallet.transfer(
        token="OVPP",
        to=recipient,
        amount=Decimal("12.5"),
        fee_token="STABLECOIN",
        quote_id=quote.id,
        idempotency_key=key,
    )
    assert isinstance(replay, Transaction) and replay.id == sent.id
    page = await wallet.transactions(first=5)
    assert [transaction.id for transaction in page.transactions] == [sent.id]
    assert page.has_next_page is False
    feed = await wallet.activity(first=2)
    assert [(item.kind, item.token.symbol) for item in feed.items] == [
        ("FEE", "USDC"),
        ("SENT", "OVPP"),
    ]
    assert {item.transaction.id for item in feed.items if item.transaction} == {sent.id}
    assert feed.items[1].amount == Decimal("12.5") and feed.has_next_page
    received = await wallet.activity(kinds=["RECEIVED"], token="OVPP")
    assert [(item.kind, item.raw) for item in received.items] == [("RECEIVED", 100 * OVPP)]


async def test_refusals_are_typed_values_and_errors_raise_with_their_code(
    client, relayer, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    wallet, _address = await signed_in(
        client, test_issuer, deployer, contracts, ovpp=1 * OVPP, stablecoin=5 * USD
    )
    recipient = fresh_address()
    quote = await wallet.quote_transfer(
        token="OVPP", to=recipient, amount="2", fee_token="STABLECOIN"
    )
    refused = await wallet.transfer(
        token="OVPP",
        to=recipient,
        amount="2",
        fee_token="STABLECOIN",
        quote_id=quote.id,
        idempotency_key=str(uuid.uuid4()),
    )
    assert isinstance(refused, InsufficientFunds), refused
    assert refused.token_symbol == "OVPP" and refused.required == Decimal(2)

    with pytest.raises(WalletApiError) as raised:
        await WalletClient(client, access_token=None).viewer_balances()
    assert raised.value.code == "UNAUTHENTICATED" and raised.value.request_id


async def test_transaction_updates_and_wallet_activity_arrive_over_subscriptions(
    app,
    client,
    relayer,
    chain_indexer,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        _in_process, _address = await signed_in(
            client, test_issuer, deployer, contracts, ovpp=5 * OVPP, stablecoin=5 * USD
        )
        async with WalletClient.open(
            f"http://127.0.0.1:{port}", access_token=_in_process.access_token
        ) as wallet:
            recipient = fresh_address()
            quote = await wallet.quote_transfer(
                token="OVPP", to=recipient, amount="1", fee_token="STABLECOIN"
            )
            sent = await wallet.transfer(
                token="OVPP",
                to=recipient,
                amount="1",
                fee_token="STABLECOIN",
                quote_id=quote.id,
                idempotency_key=str(uuid.uuid4()),
            )
            assert isinstance(sent, Transaction), sent
            statuses = [
                update.status
                async for update in wallet.transaction_updates(sent.id)  # until final
            ]
        assert statuses[-1] == "CONFIRMED", statuses
        assert len(statuses) == len(set(statuses))

        async with WalletClient.open(
            f"http://127.0.0.1:{port}", access_token=_in_process.access_token
        ) as wallet:
            pushed = wallet.wallet_activity()

            async def first_received():  # type: ignore[no-untyped-def]
                # The transfer above may still change (indexed: PENDING → CONFIRMED) and be
                # pushed first; the incoming item is the one asked for.
                async for pushed_item in pushed:
                    if pushed_item.kind != "SENT" and pushed_item.kind != "FEE":
                        return pushed_item
                return None

            first = asyncio.ensure_future(first_received())
            await asyncio.sleep(1.5)  # the subscription has read the feed as it is
            deployer.mint(token=contracts.ovpp_token, to=_address, amount=2 * OVPP)
            item = await asyncio.wait_for(first, timeout=10)
            await pushed.aclose()
        assert (item.kind, item.amount, item.counterparty_label) == (
            "RECEIVED",
            Decimal(2),
            "Token issuer",
        )
    finally:
        server.should_exit = True
        await serving


async def test_the_demo_battery_enrolls_in_the_sponsored_program_through_the_typed_client(
    client,
    relayer,
    registry_demo,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    wallet, address = await signed_in(client, demo_issuer, deployer, contracts, ovpp=3 * OVPP)
    models = await wallet.device_models(device_type="BATTERY")
    battery = next(model for model in models if model.model == "VS-13.5")
    assert battery.capabilities.energy_kwh > 0

    device = await wallet.add_device(
        make=battery.make,
        model=battery.model,
        serial=f"SN-{uuid.uuid4().hex[:10]}",
        site_address=SITE,
    )
    assert isinstance(device, Device), device
    programs = await wallet.programs(site_address=SITE, device_type="BATTERY")
    sponsored = next(program for program in programs if program.fee_payer == "SPONSOR")
    check = await wallet.check_enrollment(
        device_id=device.id,
        program_id=sponsored.id,
        protocol="IEEE_2030_5",
        payment_method="SPONSOR",
    )
    assert check.ready and not check.failing_checks, check

    enrolled = await wallet.enroll(
        device_id=device.id,
        program_id=sponsored.id,
        protocol="IEEE_2030_5",
        payment_method="SPONSOR",
        idempotency_key=str(uuid.uuid4()),
    )
    assert isinstance(enrolled, Enrollment), enrolled
    active = await wallet.wait_for_enrollment(enrolled.id)
    assert active.status == "ACTIVE", active
    assert active.connection_parameters and active.program.id == sponsored.id
    mine = await wallet.viewer_enrollments()
    assert [item.id for item in mine.devices] == [device.id]
    assert chain.ovpp_of(address) == 3 * OVPP  # the utility paid


async def test_buying_ovpp_by_card_through_the_typed_client(
    client,
    processor: RunningProcessor,
    chain_indexer,
    localstripe,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    treasury = await treasury_account(services)
    deployer.mint(token=contracts.ovpp_token, to=treasury.wallet.address, amount=1_000 * OVPP)
    wallet, address = await signed_in(client, test_issuer, deployer, contracts)

    quote = await wallet.quote_onramp(token="OVPP", currency="USD", token_amount="250")
    assert isinstance(quote, OnrampQuote), quote
    assert (quote.fiat_amount, quote.fee) == (Decimal("26.09"), Decimal("1.09"))
    payment = await wallet.create_onramp_payment(
        token="OVPP",
        currency="USD",
        token_amount="250",
        quote_id=quote.id,
        idempotency_key=str(uuid.uuid4()),
    )
    assert isinstance(payment, OnrampPayment), payment
    assert payment.status == "REQUIRES_PAYMENT" and payment.client_secret

    stripe = StripeTestClient(localstripe.url, STRIPE_API_KEY)
    try:
        await stripe.pay(payment.payment_intent_id)  # what the app's payment sheet does
        intent = await stripe.payment_intent(payment.payment_intent_id)
    finally:
        await stripe.close()
    body, signature = signed_event(
        STRIPE_WEBHOOK_SECRET, event_type="payment_intent.succeeded", obj=intent
    )
    response = await client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
    )
    assert response.status_code == 200, response.text

    for _ in range(300):
        delivered = next(p for p in await wallet.onramp_payments() if p.id == payment.id)
        transaction = delivered.delivery_transaction
        if delivered.status == "DELIVERED" and transaction and transaction.status == "CONFIRMED":
            break
        await asyncio.sleep(0.1)
    assert delivered.status == "DELIVERED", delivered
    assert delivered.refunded_amount == delivered.refund_failed_amount == Decimal(0)
    assert chain.ovpp_of(address) == 250 * OVPP
    await indexed(services)
    assert (await wallet.viewer_balances()).balance("OVPP").amount == Decimal(250)
