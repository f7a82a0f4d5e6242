"""The activity feed and indexed balances as an app reads them, and waiting for the index."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from eth_hash.auto import keccak
from sqlalchemy import select

from api.container import Services
from chain.abi_words import address_word
from chain.rpc import JsonRpc
from indexer.models import WalletBalance
from indexer.repository import cursor_of
from tests.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET
from tests.support.graphql import gql
from tests.support.onramp import buy
from tests.support.stripe import StripeTestClient, signed_event
from tests.support.transfers import quote, send
from tests.support.wallets import Customer

INDEXED_TIMEOUT_SECONDS = 60.0

ACTIVITY = """
query($first: Int!, $after: String, $filter: ActivityFilter) {
  viewer { wallet {
    asOfBlock stale
    activity(first: $first, after: $after, filter: $filter) {
      edges { cursor node {
        id kind token { symbol address decimals } amount raw counterparty counterpartyLabel
        status transaction { id status } blockNumber txHash timestamp
      } }
      pageInfo { hasNextPage endCursor }
    }
  } }
}
"""
BALANCES = """
query { viewer { wallet { asOfBlock stale balances { token { symbol } amount raw pending } } } }
"""


async def indexed(services: Services, *, block: int | None = None) -> int:
    """Waits until the index reached ``block`` (the node's head now by default); returns it."""
    if block is None:
        rpc = JsonRpc(services.settings.resolved_rpc_url)
        try:
            block = int(await rpc.call("eth_blockNumber"), 16)
        finally:
            await rpc.close()
    deadline = time.monotonic() + INDEXED_TIMEOUT_SECONDS
    while True:
        async with services.db.session() as session:
            cursor = await cursor_of(session, services.chain.profile.chain_id)
        if cursor is not None and cursor.last_block >= block:
            return block
        assert time.monotonic() < deadline, f"the index is at {cursor}, not block {block}"
        await asyncio.sleep(0.05)


async def activity(
    client: httpx.AsyncClient,
    token: str,
    *,
    first: int = 20,
    after: str | None = None,
    kinds: list[str] | None = None,
    token_kind: str | None = None,
) -> dict[str, Any]:
    """``viewer.wallet`` with one page of activity (``edges``, ``pageInfo``, ``asOfBlock``)."""
    filter_ = {"kinds": kinds, "token": token_kind} if kinds or token_kind else None
    body = await gql(
        client, ACTIVITY, {"first": first, "after": after, "filter": filter_}, token=token
    )
    assert "errors" not in body, body
    wallet = body["data"]["viewer"]["wallet"]
    return {**wallet["activity"], "asOfBlock": wallet["asOfBlock"], "stale": wallet["stale"]}


async def items(
    client: httpx.AsyncClient, token: str, *, after: str | None = None, **options: Any
) -> list[dict[str, Any]]:
    """Every item of the feed (after ``after``), newest first, read page by page."""
    found: list[dict[str, Any]] = []
    while True:
        page = await activity(client, token, after=after, **options)
        found += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return found
        after = page["pageInfo"]["endCursor"]


async def balances(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """``{"asOfBlock": …, "stale": …, "OVPP": {amount, raw, pending}, …}``."""
    body = await gql(client, BALANCES, token=token)
    assert "errors" not in body, body
    wallet = body["data"]["viewer"]["wallet"]
    by_symbol = {entry["token"]["symbol"]: entry for entry in wallet["balances"]}
    return {"asOfBlock": wallet["asOfBlock"], "stale": wallet["stale"], **by_symbol}


async def relayed_transfer(
    client: httpx.AsyncClient,
    sender_token: str,
    *,
    to: str,
    amount: str,
    fee_token: str = "OVPP",  # noqa: S107 (a token kind)
) -> dict[str, Any]:
    """Quote and send ``amount`` OVPP to ``to``; the queued transaction."""
    fields = {"token": "OVPP", "to": to, "amount": amount, "feeToken": fee_token}
    made = await quote(client, sender_token, **fields)
    sent = await send(client, sender_token, quote_id=made["id"], **fields)
    assert sent["__typename"] == "Transaction", sent
    return sent


async def card_purchase(
    client: httpx.AsyncClient, customer: Customer, *, stripe_url: str, token_amount: str
) -> str:
    """``customer`` buys ``token_amount`` OVPP by card: paid at the local Stripe, its webhook
    posted to the app; returns the payment's id (the processor delivers it)."""
    payment = await buy(client, customer, token_amount=token_amount)
    stripe = StripeTestClient(stripe_url, STRIPE_API_KEY)
    try:
        await stripe.pay(payment["paymentIntentId"])
        intent = await stripe.payment_intent(payment["paymentIntentId"])
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
    return str(payment["id"])


def _balance_of(row: WalletBalance, selector: bytes) -> dict[str, str]:
    return {"to": row.token_address, "data": "0x" + (selector + address_word(row.address)).hex()}


async def indexed_balances_match_the_chain(services: Services) -> int:
    """Every balance the index keeps equals ``balanceOf`` at the index's block (one JSON-RPC
    batch); returns how many were compared."""
    async with services.db.session() as session:
        cursor = await cursor_of(session, services.chain.profile.chain_id)
        assert cursor is not None
        rows = (await session.execute(select(WalletBalance))).scalars().all()
    selector = keccak(b"balanceOf(address)")[:4]
    calls = [
        (
            "eth_call",
            [
                {
                    "to": row.token_address,
                    "data": "0x" + (selector + address_word(row.address)).hex(),
                },
                hex(cursor.last_block),
            ],
        )
        for row in rows
    ]
    rpc = JsonRpc(services.settings.resolved_rpc_url)
    try:
        answers = await rpc.batch(calls)
    finally:
        await rpc.close()
    mismatched = [
        (row.address, row.token_address, row.balance, int(answer, 16))
        for row, answer in zip(rows, answers, strict=True)
        if row.balance != int(answer, 16)
    ]
    assert not mismatched, mismatched
    return len(rows)
