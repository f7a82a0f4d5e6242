"""graphql-transport-ws as a client app speaks it, against the app served by uvicorn: each
operation has its own context (the token checked again), only subscriptions run on the
socket, the socket is closed with 4401 when the token expires, the number of subscriptions
one connection runs at once is limited, and so is the size of a message (1009 beyond)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from api.container import Services
from api.context import RequestContext
from api.websocket import EXPIRED_CLOSE_CODE, TOO_BIG_CLOSE_CODE
from tests.support.enrollment import ADD_DEVICE, SITE
from tests.support.issuer import TestIssuer
from tests.support.relayer_pause import relayer_paused
from tests.support.rows import customers_with_subject
from tests.support.transfers import quote, send
from tests.support.wallets import Customer, FundedCustomer, fresh_address
from tests.support.websocket import connect, receive, subscribe

OVPP = 10**18
USD = 10**6
UPDATES = "subscription($id: ID!) { transactionUpdates(id: $id) { id status } }"


@dataclass(frozen=True)
class Pending:
    """A customer's transfer that stays QUEUED (the relayer is paused) so that subscriptions
    to it stay open."""

    customer: Customer
    transaction_id: str


@pytest.fixture
async def pending(
    relayer, services: Services, client, funded_customer: FundedCustomer
) -> AsyncIterator[Pending]:
    async with relayer_paused(relayer, services):  # type: ignore[arg-type]
        customer = await funded_customer(ovpp=5 * OVPP, stablecoin=5 * USD)
        to = fresh_address()
        fields = {"token": "OVPP", "to": to, "amount": "1", "feeToken": "STABLECOIN"}
        made = await quote(client, customer.token, **fields)
        sent = await send(client, customer.token, quote_id=made["id"], **fields)
        assert sent["status"] == "QUEUED", sent
        yield Pending(customer=customer, transaction_id=sent["id"])


async def test_the_socket_closes_with_4401_when_the_token_expires(
    ws_url: str, pending: Pending, services: Services, test_issuer: TestIssuer
) -> None:
    """A subscription that runs on is cut when the token expires (``exp`` plus the allowed
    clock skew), and the expired token opens nothing more."""
    leeway = services.settings.jwt_leeway_seconds
    subject = pending.customer.subject
    short = test_issuer.mint(
        sub=subject, email=f"{subject}@example.com", exp=int(time.time()) + 3 - leeway
    )
    socket = await connect(ws_url, short)
    await subscribe(socket, "1", UPDATES, {"id": pending.transaction_id})
    first = await receive(socket)
    assert first["type"] == "next" and "errors" not in first["payload"], first
    assert first["payload"]["data"]["transactionUpdates"]["status"] == "QUEUED"

    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            message = await receive(socket, timeout=10.0)
            assert message["type"] == "ping", message  # nothing else: the transfer waits
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == EXPIRED_CLOSE_CODE == 4401
    assert time.monotonic() - started < 6.0

    again = await connect(ws_url, short)
    try:
        await subscribe(again, "1", UPDATES, {"id": pending.transaction_id})
        refused = await receive(again)
        errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
        assert [error["extensions"]["code"] for error in errors] == ["UNAUTHENTICATED"], refused
    finally:
        await again.close()


async def test_queries_and_mutations_over_the_socket_are_refused_before_anything_runs(
    ws_url: str, services: Services, test_issuer: TestIssuer
) -> None:
    subject = f"ws-mutation-{uuid.uuid4().hex[:12]}"
    socket = await connect(ws_url, test_issuer.mint(sub=subject))
    try:
        device = {"make": "Acme", "model": "A1", "serial": "SN-WS-1", "siteAddress": SITE}
        await subscribe(socket, "1", ADD_DEVICE, {"input": device})
        await subscribe(socket, "2", "query { viewer { id } }", {})
        answers = {}
        for _ in range(2):
            message = await receive(socket)
            answers[message["id"]] = message
    finally:
        await socket.close()
    for message in answers.values():
        assert message["type"] == "error", message
        [error] = message["payload"]
        assert error["extensions"]["code"] == "BAD_REQUEST", error
        assert "HTTP POST /graphql" in error["message"], error
    # Nothing ran: not even the sign-in that provisions a customer.
    assert await customers_with_subject(services.db, subject) == []


async def test_operations_on_one_socket_each_have_a_context_of_their_own(
    ws_url: str, pending: Pending, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two subscriptions on one socket: each resolves the caller (and would open its session)
    in its own context, and the one that fails and ends leaves the other running."""
    contexts: list[RequestContext] = []
    account = RequestContext.account

    async def recording(self: RequestContext, *args: Any, **kwargs: Any) -> Any:
        contexts.append(self)
        return await account(self, *args, **kwargs)

    monkeypatch.setattr(RequestContext, "account", recording)
    socket = await connect(ws_url, pending.customer.token)
    try:
        await subscribe(socket, "live", UPDATES, {"id": pending.transaction_id})
        assert (await receive(socket))["id"] == "live"
        await subscribe(socket, "gone", UPDATES, {"id": str(uuid.uuid4())})
        failed = await receive(socket)
        assert failed["id"] == "gone" and failed["type"] == "next", failed
        assert [e["extensions"]["code"] for e in failed["payload"]["errors"]] == ["NOT_FOUND"]
        assert (await receive(socket)) == {"id": "gone", "type": "complete"}
        # The socket serves on; a subscription sent now has a context of its own too.
        await socket.send(json.dumps({"id": "live", "type": "complete"}))
        await subscribe(socket, "third", UPDATES, {"id": pending.transaction_id})
        third = await receive(socket)
        assert third["payload"]["data"]["transactionUpdates"]["status"] == "QUEUED", third
    finally:
        await socket.close()
    assert len(contexts) == 3 and len({id(context) for context in contexts}) == 3, contexts


async def test_one_subscription_beyond_the_connection_limit_is_refused(
    ws_url: str, pending: Pending, services: Services
) -> None:
    limit = services.settings.graphql_ws_max_subscriptions
    socket = await connect(ws_url, pending.customer.token)
    try:
        for number in range(limit):
            await subscribe(socket, str(number), UPDATES, {"id": pending.transaction_id})
            opened = await receive(socket)
            assert (opened["id"], opened["type"]) == (str(number), "next"), opened
        await subscribe(socket, "one-more", UPDATES, {"id": pending.transaction_id})
        refused = await receive(socket)
        assert (refused["id"], refused["type"]) == ("one-more", "error"), refused
        assert refused["payload"][0]["message"] == "Subscription limit reached"

        await socket.send(json.dumps({"id": "0", "type": "complete"}))
        await subscribe(socket, "one-more", UPDATES, {"id": pending.transaction_id})
        assert (await receive(socket))["id"] == "one-more"
    finally:
        await socket.close()


def sized(message: dict[str, Any], size: int) -> str:
    """``message`` as JSON padded with trailing whitespace to ``size`` UTF-8 bytes."""
    text = json.dumps(message, ensure_ascii=False)
    return text + " " * (size - len(text.encode()))


async def test_a_message_over_the_body_limit_closes_the_socket_with_1009(
    ws_url: str, services: Services, test_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graphql-transport-ws message is capped like a ``POST /graphql`` body: one byte more,
    counted in UTF-8, closes the socket with 1009 before it is parsed or run."""
    limit = 4096
    update = {"graphql_max_body_bytes": limit}
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update=update))
    token = test_issuer.mint(sub=f"ws-size-{uuid.uuid4().hex[:12]}")
    payload = {"query": UPDATES, "variables": {"id": str(uuid.uuid4())}}

    socket = await connect(ws_url, token)
    try:  # at the limit: served (the transaction is not found, as the subscription says)
        await socket.send(sized({"id": "fits", "type": "subscribe", "payload": payload}, limit))
        served = await receive(socket)
        assert (served["id"], served["type"]) == ("fits", "next"), served
    finally:
        await socket.close()

    wide = {**payload, "extensions": {"pad": "é" * (limit // 2)}}  # fewer characters than bytes
    for message in (
        sized({"id": "over", "type": "subscribe", "payload": payload}, limit + 1),
        json.dumps({"id": "wide", "type": "subscribe", "payload": wide}, ensure_ascii=False),
    ):
        assert len(message) <= limit < len(message.encode()) or len(message) == limit + 1
        socket = await connect(ws_url, token)
        await socket.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(socket)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == TOO_BIG_CLOSE_CODE == 1009
        assert f"message over {limit} bytes" in closed.value.rcvd.reason
