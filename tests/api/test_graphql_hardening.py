"""The GraphQL endpoint under abuse and failure: limits, masking, the IDE, health and request ids.

Everything goes through the real app (starlette, strawberry, the shared services on the real
chain and database); failures are produced the way they happen in production: a hostile
document, a resolver bug, a chain node that stops answering.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from strawberry.extensions import parser_cache

from api.app import create_app
from api.container import Services
from api.graphql.extensions import MASKED_MESSAGE
from api.graphql.schema import WalletSchema
from chain.client import ChainClient
from core.settings import Settings
from tests.support.graphql import VIEWER_BALANCES, error_codes
from tests.support.issuer import TestIssuer
from tests.support.ports import free_port

PUBLIC_QUERY = "{ chain { chainId name } }"


async def post_graphql(
    client: httpx.AsyncClient,
    query: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    request_headers = dict(headers or {})
    if token is not None:
        request_headers["Authorization"] = f"Bearer {token}"
    return await client.post("/graphql", json={"query": query}, headers=request_headers)


def error_messages(body: dict[str, Any]) -> list[str]:
    return [error["message"] for error in body.get("errors", [])]


def assert_refused_before_execution(body: dict[str, Any]) -> None:
    """A refused document is never executed (no ``data`` at all) and its errors are readable."""
    assert body.get("data") is None, body
    assert body.get("errors"), body
    assert MASKED_MESSAGE not in error_messages(body), body


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@asynccontextmanager
async def services_with_dead_chain(services: Services) -> AsyncIterator[Services]:
    """The shared services, except that the chain node is a port nobody listens on."""
    dead_chain = ChainClient(
        rpc_url=f"http://127.0.0.1:{free_port()}",
        profile=services.chain.profile,
        timeout_seconds=2.0,
    )
    # As if the node went away after start-up: the token metadata was read while it was up.
    dead_chain.addresses = services.chain.addresses
    dead_chain.tokens = list(services.chain.tokens)
    try:
        yield dataclasses.replace(services, chain=dead_chain)
    finally:
        await dead_chain.close()


# --- limits ---------------------------------------------------------------------------------


async def test_a_document_deeper_than_the_limit_is_refused(
    settings: Settings, services: Services
) -> None:
    # The schema's documents are far shallower than the default limit (12) and the limiter does
    # not count introspection fields, so the limit is lowered below the balances query
    # (`viewer wallet balances token symbol`: depth 4) to see it refuse a real document.
    shallow = settings.model_copy(update={"graphql_max_depth": 3})

    async with client_for(create_app(shallow, services=services)) as client:
        within_limit = await post_graphql(client, "{ viewer { wallet { address } } }")
        response = await post_graphql(client, VIEWER_BALANCES)

    assert error_codes(within_limit.json()) == ["UNAUTHENTICATED"], "validated, then executed"
    body = response.json()
    assert_refused_before_execution(body)
    # One error per field that reaches past the limit, all the same.
    assert set(error_messages(body)) == {"'anonymous' exceeds maximum operation depth of 3"}


async def test_a_document_with_too_many_aliases_is_refused(client, settings: Settings) -> None:
    aliased_fields = " ".join(
        f"chain{index}: chain {{ name }}" for index in range(settings.graphql_max_aliases + 1)
    )

    response = await post_graphql(client, "{ " + aliased_fields + " }")

    body = response.json()
    assert_refused_before_execution(body)
    expected = (
        f"{settings.graphql_max_aliases + 1} aliases found. Allowed: {settings.graphql_max_aliases}"
    )
    assert expected in error_messages(body), body


async def test_a_huge_document_is_refused_by_the_token_limit(client, settings: Settings) -> None:
    # Each repetition is four tokens (`chain`, `{`, `name`, `}`).
    huge_query = "{ " + "chain { name } " * settings.graphql_max_tokens + "}"

    response = await post_graphql(client, huge_query)

    body = response.json()
    assert_refused_before_execution(body)
    assert error_messages(body) == [
        f"Syntax Error: Document contains more than {settings.graphql_max_tokens} tokens. "
        "Parsing aborted."
    ]


async def test_a_syntax_error_is_reported_readably(client) -> None:
    response = await post_graphql(client, "{ chain { name }")

    body = response.json()
    assert_refused_before_execution(body)
    [message] = error_messages(body)
    assert message.startswith("Syntax Error:"), body
    assert body["errors"][0]["locations"], "a syntax error points at where it is"


async def test_an_unknown_field_is_reported_readably(client) -> None:
    response = await post_graphql(client, "{ chain { name balanceOfTheMoon } }")

    body = response.json()
    assert_refused_before_execution(body)
    assert error_messages(body) == ["Cannot query field 'balanceOfTheMoon' on type 'Chain'."]


@pytest.mark.parametrize(
    "document",
    [
        "{ viewer { } }",
        "{ viewer { wallet { } } }",
        "{ viewer { ... on Viewer { } } }",
        "query { }",
    ],
    ids=["field", "nested-field", "inline-fragment", "operation"],
)
async def test_an_empty_selection_set_is_a_syntax_error(client, document: str) -> None:
    # graphql-core 3.3 parses `{ }` by default; strawberry's depth limiter then crashed inside
    # validation, and the crash's own message ("max() arg is an empty sequence") reached the
    # client unmasked. Found by tests/api/test_schemathesis.py.
    unexpected_before = WalletSchema.unexpected_error_count

    response = await post_graphql(client, document)

    body = response.json()
    assert_refused_before_execution(body)
    assert error_messages(body) == ["Syntax Error: Expected Name, found '}'."]
    assert WalletSchema.unexpected_error_count == unexpected_before


# --- errors: masked when unexpected, typed when expected ------------------------------------


async def test_an_unexpected_resolver_error_is_masked_and_logged_with_the_request_id(
    client,
    services: Services,
    test_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_head() -> int:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(services.chain, "head_block", broken_head)
    caplog.set_level(logging.ERROR, logger="api.graphql")

    response = await post_graphql(client, VIEWER_BALANCES, token=test_issuer.mint())

    assert response.status_code == 200
    body = response.json()
    assert error_messages(body) == [MASKED_MESSAGE]
    assert "extensions" not in body["errors"][0], "a masked error must not carry a code"
    assert "secret" not in response.text.lower()
    assert "RuntimeError" not in response.text
    assert "secret" not in str(response.headers).lower()

    request_id = response.headers["x-request-id"]
    [record] = [record for record in caplog.records if record.name == "api.graphql"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(f"request {request_id}: unexpected error at ")
    assert record.exc_info is not None, "the log must carry the traceback"
    traceback_text = caplog.text
    assert "Traceback (most recent call last)" in traceback_text
    assert "RuntimeError: secret internal detail" in traceback_text


async def test_an_unexpected_error_before_execution_is_masked_too(
    client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An exception escaping an extension hook (here the parser cache's) skips MaskErrors, which
    # masks when the operation hook ends; strawberry then answers with the exception's message.
    def exploding_parse(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret parser detail")

    monkeypatch.setattr(parser_cache, "_get_parse_cache", lambda _maxsize: exploding_parse)
    caplog.set_level(logging.ERROR, logger="api.graphql")

    response = await post_graphql(client, PUBLIC_QUERY)

    assert response.status_code == 200
    assert error_messages(response.json()) == [MASKED_MESSAGE]
    assert "secret" not in response.text.lower()
    request_id = response.headers["x-request-id"]
    assert f"request {request_id}: unexpected error" in caplog.text
    assert "RuntimeError: secret parser detail" in caplog.text


async def test_an_unreachable_chain_is_a_typed_error(
    settings: Settings, services: Services, test_issuer: TestIssuer
) -> None:
    async with (
        services_with_dead_chain(services) as without_chain,
        client_for(create_app(settings, services=without_chain)) as client,
    ):
        # Whether the index is stale asks the node for its head.
        response = await post_graphql(
            client, "{ viewer { wallet { stale } } }", token=test_issuer.mint()
        )

    assert response.status_code == 200
    body = response.json()
    assert error_codes(body) == ["CHAIN_UNAVAILABLE"], body
    assert error_messages(body) == ["the chain is not reachable right now; try again"]
    assert body["data"] is None


# --- the IDE ----------------------------------------------------------------------------------


async def test_graphiql_is_served_in_development(client) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_graphiql_is_not_served_in_production(settings: Settings, services: Services) -> None:
    production = settings.model_copy(update={"environment": "production"})
    assert not production.is_development

    async with client_for(create_app(production, services=services)) as client:
        response = await client.get("/graphql", headers={"Accept": "text/html"})
        # The API itself still answers in production.
        query_response = await post_graphql(client, PUBLIC_QUERY)

    assert response.status_code in (400, 404, 405), response.status_code
    assert "graphiql" not in response.text.lower()
    assert query_response.json()["data"]["chain"]["chainId"] == 31337


# --- health checks ----------------------------------------------------------------------------


async def test_healthz_says_alive(client) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_readyz_is_ready_when_database_and_chain_answer(client) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": True, "chain": True}}


async def test_readyz_is_503_naming_the_chain_when_the_chain_is_unreachable(
    settings: Settings, services: Services
) -> None:
    async with (
        services_with_dead_chain(services) as without_chain,
        client_for(create_app(settings, services=without_chain)) as client,
    ):
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "checks": {"database": True, "chain": False},
    }


# --- request ids ------------------------------------------------------------------------------


async def test_a_sane_incoming_request_id_is_echoed(client) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "support-Ticket_42.7"})

    assert response.headers["x-request-id"] == "support-Ticket_42.7"


@pytest.mark.parametrize(
    "unsafe_request_id",
    ["has spaces", "<script>alert(1)</script>", "x" * 65, 'quote"d', ""],
    ids=["spaces", "markup", "too-long", "quote", "empty"],
)
async def test_an_unsafe_incoming_request_id_is_replaced(client, unsafe_request_id: str) -> None:
    response = await post_graphql(client, PUBLIC_QUERY, headers={"X-Request-ID": unsafe_request_id})

    replaced = response.headers["x-request-id"]
    assert replaced != unsafe_request_id
    assert len(replaced) == 32
    assert all(character in "0123456789abcdef" for character in replaced), replaced
    assert response.headers.get_list("x-request-id") == [replaced], "exactly one request id"
