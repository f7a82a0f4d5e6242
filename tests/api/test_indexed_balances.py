"""Indexed balances equal ``balanceOf`` at the same block after a random mix of what moves
tokens: relayed transfers between customers and out (fees in either token), tokens sent in
from outside, a card purchase's delivery and an enrollment's fee; each shows in the feed as its
kind."""

from __future__ import annotations

import random

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from onramp.processor import RunningProcessor
from onramp.treasury import treasury_account
from tests.support.activity import (
    card_purchase,
    indexed,
    indexed_balances_match_the_chain,
    items,
    relayed_transfer,
)
from tests.support.enrollment import add_device, enroll, program_id, wait_enrollment
from tests.support.issuer import TestIssuer
from tests.support.onramp import wait_payment
from tests.support.wallets import fresh_address, new_customer, wait_for_status

OVPP = 10**18
USD = 10**6


async def test_every_indexed_balance_is_balance_of_at_the_same_block_after_a_random_mix(
    client,
    relayer,
    processor: RunningProcessor,
    registry_demo,
    chain_indexer,
    localstripe,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    treasury = await treasury_account(services)
    deployer.mint(token=contracts.ovpp_token, to=treasury.wallet.address, amount=1_000 * OVPP)
    customers = [
        await new_customer(
            client, demo_issuer, deployer, contracts, ovpp=40 * OVPP, stablecoin=20 * USD
        )
        for _ in range(3)
    ]
    mix = random.Random(18)
    for step in range(8):
        sender = mix.choice(customers)
        if step % 4 == 3:
            outsider_to = mix.choice(customers).address
            deployer.mint(
                token=contracts.stablecoin, to=outsider_to, amount=mix.randint(1, 9) * USD
            )
            continue
        to = mix.choice([c.address for c in customers if c is not sender] + [fresh_address()])
        sent = await relayed_transfer(
            client,
            sender.token,
            to=to,
            amount=str(mix.randint(1, 3)),
            fee_token=mix.choice(["OVPP", "STABLECOIN"]),
        )
        if step % 3 == 0:  # some land before the next is sent, the others together
            await wait_for_status(client, sender.token, sent["id"])

    buyer, enroller = customers[0], customers[1]
    payment = await card_purchase(client, buyer, stripe_url=localstripe.url, token_amount="25")
    device = await add_device(client, enroller.token, "Voltstack", "VS-13.5")
    enrolled = await enroll(
        client,
        enroller.token,
        deviceId=device,
        programId=await program_id(services, "dr-battery-2026"),
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert (await wait_enrollment(client, enroller.token, enrolled["id"]))["status"] == "ACTIVE"
    await wait_payment(client, buyer, payment, "DELIVERED", timeout=60)
    for customer in customers:
        for item in await items(client, customer.token):
            if item["transaction"] is not None:
                await wait_for_status(client, customer.token, item["transaction"]["id"])

    await indexed(services)
    assert await indexed_balances_match_the_chain(services) >= 4
    assert "PURCHASE" in {i["kind"] for i in await items(client, buyer.token)}
    enroller_kinds = [i["kind"] for i in await items(client, enroller.token)]
    assert "ENROLLMENT_FEE" in enroller_kinds and "FEE" in enroller_kinds
