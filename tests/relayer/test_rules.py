"""The relayer's rules, seen from the API and the chain: sponsorship, overdraft, idempotency,
quotes, policies, scopes and live status."""

from __future__ import annotations

import asyncio
import json

import uvicorn
import websockets
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.tokens import parse_units
from relayer.models import FeeQuote, RelayTransaction, WalletPolicy
from relayer.sponsorship import sponsor_of_tenant
from tests.conftest import AUDIENCE
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.ports import free_port
from tests.support.transfers import QUOTE, TRANSFER, charge_of, jobs_of, quote, send
from tests.support.utilities import fresh_utility
from tests.support.wallets import (
    ChainReader,
    FundedCustomer,
    fresh_address,
    new_customer,
    wait_for_status,
)
from wallet.models import Wallet

OVPP = 10**18
USD = 10**6
SUBSCRIPTION = "subscription($id: ID!) { transactionUpdates(id: $id) { id status hash } }"


async def test_a_sponsored_transfer_costs_the_customer_nothing_and_charges_the_sponsor(
    client, relayer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    chain = ChainReader(deployer, contracts)
    async with fresh_utility(services, audience=AUDIENCE, sponsor_funds_wei=10**18) as (
        issuer,
        tenant_id,
    ):
        customer = await new_customer(client, issuer, deployer, contracts, ovpp=20 * OVPP)
        to = fresh_address()
        fee_quote = await quote(
            client, customer.token, token="OVPP", to=to, amount="5", feeToken="STABLECOIN"
        )
        assert fee_quote["sponsored"] is True
        assert fee_quote["sponsorName"].endswith("sponsorship")
        assert fee_quote["feeAmount"] == "0"
        result = await send(
            client,
            customer.token,
            quote_id=fee_quote["id"],
            token="OVPP",
            to=to,
            amount="5",
            feeToken="STABLECOIN",
        )
        assert result["__typename"] == "Transaction" and result["sponsored"] is True
        final = await wait_for_status(client, customer.token, result["id"])
        assert final["status"] == "CONFIRMED", final
        receipt = chain.receipt(final["hash"])

        assert chain.native(customer.address) == 0
        assert chain.usd_of(customer.address) == 0
        assert chain.ovpp_of(customer.address) == 15 * OVPP
        assert chain.ovpp_of(to) == 5 * OVPP
        async with services.db.session() as session:
            sponsor = await sponsor_of_tenant(session, tenant_id)
        charge = await charge_of(services, result["id"])
        assert charge.sponsor_id == sponsor.id
        assert charge.settled is True
        assert charge.amount_wei == receipt["gasUsed"] * receipt["effectiveGasPrice"]


async def test_a_spent_budget_refuses_with_the_reason_and_sends_nothing(
    client, relayer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    chain = ChainReader(deployer, contracts)
    async with fresh_utility(services, audience=AUDIENCE, sponsor_funds_wei=0) as (
        issuer,
        tenant_id,
    ):
        customer = await new_customer(
            client, issuer, deployer, contracts, ovpp=20 * OVPP, stablecoin=5 * USD
        )
        to = fresh_address()
        body = await gql(
            client,
            QUOTE,
            {"input": {"token": "OVPP", "to": to, "amount": "1", "feeToken": "STABLECOIN"}},
            token=customer.token,
        )
        assert error_codes(body) == ["SPONSOR_REFUSED"]
        assert "spent" in body["errors"][0]["message"]

        # A quote taken while the budget lasted, then the budget runs out before the transfer.
        async with services.db.session() as session:
            sponsor = await sponsor_of_tenant(session, tenant_id)
            sponsor.funds_wei = 10**18
            session.add(sponsor)
        fee_quote = await quote(
            client, customer.token, token="OVPP", to=to, amount="1", feeToken="STABLECOIN"
        )
        assert fee_quote["sponsored"] is True
        async with services.db.session() as session:
            sponsor = await sponsor_of_tenant(session, tenant_id)
            sponsor.funds_wei = 1
            session.add(sponsor)
        result = await send(
            client,
            customer.token,
            quote_id=fee_quote["id"],
            token="OVPP",
            to=to,
            amount="1",
            feeToken="STABLECOIN",
        )
        assert result["__typename"] == "SponsorRefused", result
        assert result["reason"] == "BUDGET_EXHAUSTED"
        assert result["sponsorName"]
        assert await jobs_of(services, customer.address) == []
        assert chain.ovpp_of(customer.address) == 20 * OVPP
        assert (
            chain.usd_of(customer.address) == 5 * USD
        )  # never falls back to charging the customer


async def test_fifty_concurrent_transfers_never_overdraw(
    client,
    relayer,
    services: Services,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=100 * OVPP, stablecoin=100 * USD)
    recipients = [fresh_address() for _ in range(50)]
    quotes = await asyncio.gather(
        *(
            quote(client, customer.token, token="OVPP", to=to, amount="3", feeToken="STABLECOIN")
            for to in recipients
        )
    )
    results = await asyncio.gather(
        *(
            send(
                client,
                customer.token,
                quote_id=q["id"],
                token="OVPP",
                to=to,
                amount="3",
                feeToken="STABLECOIN",
            )
            for q, to in zip(quotes, recipients, strict=True)
        )
    )
    kinds = [r["__typename"] for r in results]
    assert set(kinds) <= {"Transaction", "InsufficientFunds"}, results
    accepted = [r for r in results if r["__typename"] == "Transaction"]
    assert len(accepted) == 33  # 33 × 3 = 99 ≤ 100 < 34 × 3
    finals = await asyncio.gather(
        *(wait_for_status(client, customer.token, r["id"]) for r in accepted)
    )
    assert all(f["status"] == "CONFIRMED" for f in finals), finals
    sent_to = {r["to"].lower() for r in accepted}
    assert chain.ovpp_of(customer.address) == 100 * OVPP - 33 * 3 * OVPP
    assert sum(chain.ovpp_of(to) for to in recipients) == 33 * 3 * OVPP
    assert all(chain.ovpp_of(to) == (3 * OVPP if to.lower() in sent_to else 0) for to in recipients)
    fees = sum(parse_units(r["feeAmount"], 6) for r in accepted)
    assert chain.usd_of(customer.address) == 100 * USD - fees


async def test_replaying_an_idempotency_key_returns_the_same_transaction(
    client,
    relayer,
    services: Services,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=10 * OVPP, stablecoin=10 * USD)
    to = fresh_address()
    fee_quote = await quote(
        client, customer.token, token="OVPP", to=to, amount="2", feeToken="OVPP"
    )
    fields = {"token": "OVPP", "to": to, "amount": "2", "feeToken": "OVPP"}
    first = await send(
        client, customer.token, quote_id=fee_quote["id"], key="pay-rent-2026-11", **fields
    )
    replays = await asyncio.gather(
        *(
            send(client, customer.token, quote_id=fee_quote["id"], key="pay-rent-2026-11", **fields)
            for _ in range(3)
        )
    )
    assert all(r["id"] == first["id"] for r in replays)
    await wait_for_status(client, customer.token, first["id"])
    again = await send(
        client, customer.token, quote_id=fee_quote["id"], key="pay-rent-2026-11", **fields
    )
    assert again["id"] == first["id"] and again["status"] == "CONFIRMED"
    different = await send(
        client,
        customer.token,
        quote_id=fee_quote["id"],
        key="pay-rent-2026-11",
        **{**fields, "amount": "3"},
    )
    assert different["__typename"] == "InvalidInput" and different["field"] == "idempotencyKey"
    assert len(await jobs_of(services, customer.address)) == 1
    assert chain.ovpp_of(to) == 2 * OVPP


async def test_an_expired_quote_is_refused_and_nothing_is_queued(
    client,
    relayer,
    services: Services,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=10 * OVPP, stablecoin=10 * USD)
    to = fresh_address()
    fee_quote = await quote(
        client, customer.token, token="OVPP", to=to, amount="1", feeToken="STABLECOIN"
    )
    async with services.db.session() as session:
        row = await session.get(FeeQuote, fee_quote["id"])
        row.expires_at = row.created_at
        session.add(row)
    result = await send(
        client,
        customer.token,
        quote_id=fee_quote["id"],
        token="OVPP",
        to=to,
        amount="1",
        feeToken="STABLECOIN",
    )
    assert result["__typename"] == "QuoteExpired"
    mismatched = await quote(
        client, customer.token, token="OVPP", to=to, amount="1", feeToken="STABLECOIN"
    )
    result = await send(
        client,
        customer.token,
        quote_id=mismatched["id"],
        token="OVPP",
        to=to,
        amount="2",
        feeToken="STABLECOIN",
    )
    assert result["__typename"] == "InvalidInput" and result["field"] == "quoteId"
    assert await jobs_of(services, customer.address) == []
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == customer.address))
        ).scalar_one()
    assert wallet.next_forwarder_nonce == 0, "a refused transfer must not take a forwarder nonce"


async def test_wallet_policies_are_enforced_before_signing(
    client,
    relayer,
    services: Services,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=50 * OVPP, stablecoin=10 * USD)
    allowed = fresh_address()
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == customer.address))
        ).scalar_one()
        session.add(
            WalletPolicy(
                wallet_id=wallet.id,
                token="OVPP",
                daily_limit=4 * OVPP,
                allowed_destinations=[allowed],
            )
        )
    elsewhere = fresh_address()
    q = await quote(
        client, customer.token, token="OVPP", to=elsewhere, amount="1", feeToken="STABLECOIN"
    )
    result = await send(
        client,
        customer.token,
        quote_id=q["id"],
        token="OVPP",
        to=elsewhere,
        amount="1",
        feeToken="STABLECOIN",
    )
    assert result["__typename"] == "PolicyViolation" and result["rule"] == "ALLOWED_DESTINATIONS"
    q = await quote(
        client, customer.token, token="OVPP", to=allowed, amount="3", feeToken="STABLECOIN"
    )
    result = await send(
        client,
        customer.token,
        quote_id=q["id"],
        token="OVPP",
        to=allowed,
        amount="3",
        feeToken="STABLECOIN",
    )
    assert result["__typename"] == "Transaction"
    q = await quote(
        client, customer.token, token="OVPP", to=allowed, amount="2", feeToken="STABLECOIN"
    )
    result = await send(
        client,
        customer.token,
        quote_id=q["id"],
        token="OVPP",
        to=allowed,
        amount="2",
        feeToken="STABLECOIN",
    )
    assert result["__typename"] == "PolicyViolation" and result["rule"] == "DAILY_LIMIT"
    assert "daily limit of 4 OVPP" in result["message"]


async def test_signing_needs_the_wallet_sign_scope_and_input_is_validated(
    client,
    relayer,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    reader = await new_customer(
        client, test_issuer, deployer, contracts, ovpp=5 * OVPP, scope="wallet:read"
    )
    to = fresh_address()
    q = await quote(client, reader.token, token="OVPP", to=to, amount="1", feeToken="OVPP")
    body = await gql(
        client,
        TRANSFER,
        {
            "input": {
                "token": "OVPP",
                "to": to,
                "amount": "1",
                "feeToken": "OVPP",
                "quoteId": q["id"],
                "idempotencyKey": "k",
            }
        },
        token=reader.token,
    )
    assert error_codes(body) == ["FORBIDDEN"]
    for bad_to, bad_amount, _field in (
        ("0x1234", "1", "to"),
        (to, "-1", "amount"),
        (to, "1e3", "amount"),
        (to, "0.0000000000000000001", "amount"),
        (to, "0", "amount"),
    ):
        body = await gql(
            client,
            QUOTE,
            {"input": {"token": "OVPP", "to": bad_to, "amount": bad_amount, "feeToken": "OVPP"}},
            token=reader.token,
        )
        assert error_codes(body) == ["INVALID_INPUT"], (bad_to, bad_amount, body)


async def test_transaction_updates_are_pushed_over_graphql_transport_ws(
    app,
    relayer,
    services: Services,
    client,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=5 * OVPP, stablecoin=5 * USD)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        to = fresh_address()
        q = await quote(
            client, customer.token, token="OVPP", to=to, amount="1", feeToken="STABLECOIN"
        )
        result = await send(
            client,
            customer.token,
            quote_id=q["id"],
            token="OVPP",
            to=to,
            amount="1",
            feeToken="STABLECOIN",
        )
        statuses = []
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-transport-ws"]
        ) as socket:
            await socket.send(
                json.dumps(
                    {
                        "type": "connection_init",
                        "payload": {"Authorization": f"Bearer {customer.token}"},
                    }
                )
            )
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            await socket.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {
                            "query": SUBSCRIPTION,
                            "variables": {"id": result["id"]},
                        },
                    }
                )
            )
            while True:
                message = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
                if message["type"] == "complete":
                    break
                assert message["type"] == "next", message
                assert "errors" not in message["payload"], message
                statuses.append(message["payload"]["data"]["transactionUpdates"]["status"])
        assert statuses[-1] == "CONFIRMED"
        assert len(statuses) == len(set(statuses)), "each status is pushed once"
    finally:
        server.should_exit = True
        await serving


async def test_transactions_are_paginated_newest_first(
    client,
    relayer,
    services: Services,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=10 * OVPP, stablecoin=10 * USD)
    ids = []
    for amount in ("1", "2", "3"):
        to = fresh_address()
        q = await quote(
            client, customer.token, token="OVPP", to=to, amount=amount, feeToken="STABLECOIN"
        )
        ids.append(
            (
                await send(
                    client,
                    customer.token,
                    quote_id=q["id"],
                    token="OVPP",
                    to=to,
                    amount=amount,
                    feeToken="STABLECOIN",
                )
            )["id"]
        )
    page_query = """
    query($after: String) { viewer { wallet { transactions(first: 2, after: $after) {
      edges { cursor node { id amount } } pageInfo { hasNextPage endCursor } } } } }
    """
    first = (await gql(client, page_query, {"after": None}, token=customer.token))["data"][
        "viewer"
    ]["wallet"]["transactions"]
    assert [e["node"]["id"] for e in first["edges"]] == [ids[2], ids[1]]
    assert first["pageInfo"]["hasNextPage"] is True
    second = (
        await gql(
            client, page_query, {"after": first["pageInfo"]["endCursor"]}, token=customer.token
        )
    )["data"]["viewer"]["wallet"]["transactions"]
    assert [e["node"]["id"] for e in second["edges"]] == [ids[0]]
    assert second["pageInfo"]["hasNextPage"] is False
    for transaction_id in ids:  # leave nothing in flight for the tests that follow
        assert (await wait_for_status(client, customer.token, transaction_id))[
            "status"
        ] == "CONFIRMED"
    async with services.db.session() as session:
        count = (
            await session.execute(select(func.count()).select_from(RelayTransaction))
        ).scalar_one()
    assert count >= 3


async def test_a_wallet_recovers_after_a_transaction_fails_without_executing(
    client,
    relayer,
    services: Services,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    """An earlier job took forwarder nonces and never ran: the wallet's next transfer carries
    nonces the forwarder refuses, and its transaction reverts. That is not the transfer's own
    failure: it goes back to the queue, the worker re-synchronises the wallet from the
    forwarder's on-chain nonce, and the transfer confirms; so does the next one."""
    customer = await funded_customer(ovpp=10 * OVPP, stablecoin=5 * USD)
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == customer.address))
        ).scalar_one()
        wallet.next_forwarder_nonce += 3  # as if an earlier job had taken nonces and never run
        session.add(wallet)
    to = fresh_address()
    q = await quote(client, customer.token, token="OVPP", to=to, amount="1", feeToken="STABLECOIN")
    behind_the_gap = await send(
        client,
        customer.token,
        quote_id=q["id"],
        token="OVPP",
        to=to,
        amount="1",
        feeToken="STABLECOIN",
    )
    final = await wait_for_status(client, customer.token, behind_the_gap["id"])
    assert final["status"] == "CONFIRMED" and final["error"] is None, final
    [job] = [j for j in await jobs_of(services, customer.address) if j.id == final["id"]]
    assert job.forwarder_nonce == 0 and job.tx_hash == final["hash"]
    assert chain.receipt(final["hash"])["status"] == 1
    async with services.db.session() as session:
        wallet = await session.get(Wallet, wallet.id, populate_existing=True)
    assert wallet.next_forwarder_nonce == 2  # the transfer and its fee
    q = await quote(client, customer.token, token="OVPP", to=to, amount="2", feeToken="STABLECOIN")
    ok = await send(
        client,
        customer.token,
        quote_id=q["id"],
        token="OVPP",
        to=to,
        amount="2",
        feeToken="STABLECOIN",
    )
    assert (await wait_for_status(client, customer.token, ok["id"]))["status"] == "CONFIRMED"
    assert chain.ovpp_of(to) == 3 * OVPP
    assert chain.ovpp_of(customer.address) == 7 * OVPP
