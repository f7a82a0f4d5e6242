"""``viewer.wallet.activity`` and indexed balances, through the API, with the session's relayer
and indexer: what each kind of movement shows as, one item per relayed transfer, the walls
between wallets, and pages that neither skip nor repeat."""

from __future__ import annotations

from decimal import Decimal

from api.container import Services
from tests.support.activity import activity, balances, indexed, items, relayed_transfer
from tests.support.relayer_pause import relayer_paused
from tests.support.wallets import FundedCustomer, fresh_address, wait_for_status

OVPP = 10**18
USD = 10**6


async def test_a_relayed_transfer_is_one_sent_item_and_one_fee_item_and_the_recipient_sees_it(
    client, relayer, chain_indexer, services: Services, funded_customer: FundedCustomer
) -> None:
    alice = await funded_customer(ovpp=20 * OVPP, stablecoin=5 * USD)
    bob = await funded_customer()
    await indexed(services)
    assert [
        (i["kind"], i["amount"], i["counterpartyLabel"]) for i in await items(client, alice.token)
    ] == [("RECEIVED", "5", "Token issuer"), ("RECEIVED", "20", "Token issuer")]

    async with relayer_paused(relayer, services):
        sent = await relayed_transfer(client, alice.token, to=bob.address, amount="3")
        (pending,) = [i for i in await items(client, alice.token) if i["status"] == "PENDING"]
        assert pending["kind"] == "SENT" and pending["transaction"]["id"] == sent["id"]
        assert pending["counterparty"] == bob.address
        assert pending["counterpartyLabel"] == "Test Utility customer"
        incoming = (await items(client, bob.token))[0]
        assert (incoming["kind"], incoming["status"], incoming["amount"]) == (
            "RECEIVED", "PENDING", "3"
        )  # fmt: skip
        assert incoming["transaction"] is None  # the sender's transaction is not bob's
        fee = sent["feeAmount"]
        in_flight = await balances(client, alice.token)
        assert in_flight["OVPP"]["amount"] == "20"
        assert Decimal(in_flight["OVPP"]["pending"]) == -(3 + Decimal(fee))
        assert (await balances(client, bob.token))["OVPP"]["pending"] == "3"

    confirmed = await wait_for_status(client, alice.token, sent["id"])
    assert confirmed["status"] == "CONFIRMED", confirmed
    await indexed(services)
    feed = await items(client, alice.token)
    assert [i["kind"] for i in feed] == ["FEE", "SENT", "RECEIVED", "RECEIVED"]
    fee_item, sent_item = feed[0], feed[1]
    assert sent_item["id"] == pending["id"], "the in-flight item became the on-chain one"
    assert sent_item["txHash"] == fee_item["txHash"] == confirmed["hash"]
    assert sent_item["transaction"]["id"] == fee_item["transaction"]["id"] == sent["id"]
    assert (fee_item["amount"], fee_item["counterpartyLabel"]) == (fee, "Network fees")
    assert sent_item["blockNumber"] is not None and sent_item["amount"] == "3"
    after = await balances(client, alice.token)
    assert after["OVPP"]["pending"] == "0"
    assert Decimal(after["OVPP"]["amount"]) == 17 - Decimal(fee)
    bob_feed = await items(client, bob.token)
    assert [(i["kind"], i["amount"], i["id"] != sent_item["id"]) for i in bob_feed] == [
        ("RECEIVED", "3", True)
    ]
    assert {i["id"] for i in bob_feed}.isdisjoint({i["id"] for i in feed})
    assert (await balances(client, bob.token))["OVPP"]["amount"] == "3"


async def test_pages_neither_skip_nor_repeat_while_new_items_arrive(
    client, relayer, chain_indexer, services: Services, funded_customer: FundedCustomer
) -> None:
    carol = await funded_customer(ovpp=10 * OVPP)
    for _ in range(3):
        sent = await relayed_transfer(client, carol.token, to=fresh_address(), amount="1")
        await wait_for_status(client, carol.token, sent["id"])
    await indexed(services)
    everything = await items(client, carol.token, first=100)
    assert [i["kind"] for i in everything] == ["FEE", "SENT"] * 3 + ["RECEIVED"]

    first = await activity(client, carol.token, first=3)
    late = await relayed_transfer(client, carol.token, to=fresh_address(), amount="1")
    await wait_for_status(client, carol.token, late["id"])
    await indexed(services)
    rest = await items(client, carol.token, first=2, after=first["pageInfo"]["endCursor"])
    paged = [edge["node"]["id"] for edge in first["edges"]] + [i["id"] for i in rest]
    assert paged == [i["id"] for i in everything]
    sent_only = await items(client, carol.token, first=2, kinds=["SENT"], token_kind="OVPP")
    assert [i["kind"] for i in sent_only] == ["SENT"] * 4
    assert [i["kind"] for i in await items(client, carol.token, kinds=["RECEIVED"])] == ["RECEIVED"]
