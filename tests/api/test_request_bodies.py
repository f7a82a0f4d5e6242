"""Request bodies on the two paths that read them, ``POST /graphql`` and ``POST /webhooks/stripe``:
a body that is not one JSON object gets 400 (never a 500), and a body above the configured size
gets 413 before it is read: at once from its ``Content-Length``, else as its chunks arrive.

The size tests drive the ASGI app with a client that counts what the app takes from it, so
"before it is read" is measured, not assumed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from sqlmodel import func, select
from starlette.applications import Starlette

from api.app import create_app
from api.container import Services
from core.settings import Settings
from onramp.models import StripeEvent
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.stripe import sign

LIMIT = 64 * 1024
CHUNK = 16 * 1024
TEN_MB = 10 * 1024 * 1024
NOT_OBJECTS = [b"null", b"123", b'"x"', b"[]", b'[{"query": "{ chain { name } }"}]', b"true"]


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def small_limits_app(settings: Settings, services: Services) -> Starlette:
    limited = settings.model_copy(
        update={"graphql_max_body_bytes": LIMIT, "stripe_webhook_max_body_bytes": LIMIT}
    )
    return create_app(limited, services=services)


async def stripe_events(services: Services) -> int:
    async with services.db.session() as session:
        statement = select(func.count()).select_from(StripeEvent)
        return int((await session.execute(statement)).scalar_one())


# --- not a JSON object ----------------------------------------------------------------------


@pytest.mark.parametrize("body", [*NOT_OBJECTS, b"\xff\xfe not utf-8", b"{"])
async def test_a_graphql_body_that_is_not_one_json_object_gets_400(client, body: bytes) -> None:
    response = await client.post(
        "/graphql", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("body", NOT_OBJECTS)
async def test_a_signed_webhook_body_that_is_not_an_event_gets_400_and_stores_nothing(
    client, services: Services, body: bytes
) -> None:
    before = await stripe_events(services)
    for signature in (sign(STRIPE_WEBHOOK_SECRET, body, timestamp=int(time.time())), None):
        headers = {"Content-Type": "application/json"}
        if signature:
            headers["Stripe-Signature"] = signature
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 400, (signature, response.text)
    assert await stripe_events(services) == before


# --- too large ------------------------------------------------------------------------------


@dataclass
class Upload:
    """A request body the app pulls chunk by chunk; ``taken`` is how much it pulled."""

    total: int
    taken: int = 0
    responses: list[dict] = field(default_factory=list)

    async def receive(self) -> dict:
        if self.taken >= self.total:
            return {"type": "http.disconnect"}
        chunk = min(CHUNK, self.total - self.taken)
        self.taken += chunk
        return {"type": "http.request", "body": b" " * chunk, "more_body": self.taken < self.total}

    async def send(self, message: dict) -> None:
        self.responses.append(message)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.responses if m["type"] == "http.response.start")


async def post_raw(
    app: Starlette, path: str, upload: Upload, *, declare_length: bool, root_path: str = ""
) -> None:
    headers = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    if declare_length:
        headers.append((b"content-length", str(upload.total).encode()))
    else:
        headers.append((b"transfer-encoding", b"chunked"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": root_path + path,
        "raw_path": (root_path + path).encode(),
        "root_path": root_path,
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, upload.receive, upload.send)


@pytest.mark.parametrize("path", ["/graphql", "/webhooks/stripe"])
async def test_a_declared_length_above_the_limit_gets_413_before_any_byte_is_read(
    small_limits_app: Starlette, path: str
) -> None:
    upload = Upload(total=TEN_MB)

    await post_raw(small_limits_app, path, upload, declare_length=True)

    assert upload.status == 413
    assert upload.taken == 0


@pytest.mark.parametrize("path", ["/graphql", "/webhooks/stripe"])
async def test_a_chunked_body_is_refused_once_its_chunks_pass_the_limit(
    small_limits_app: Starlette, path: str
) -> None:
    upload = Upload(total=TEN_MB)

    await post_raw(small_limits_app, path, upload, declare_length=False)

    assert upload.status == 413
    assert upload.taken <= LIMIT + CHUNK  # read no further than the chunk that crossed it


@pytest.mark.parametrize("path", ["/graphql", "/webhooks/stripe"])
async def test_the_limits_hold_when_the_app_is_mounted_under_a_root_path(
    small_limits_app: Starlette, path: str
) -> None:
    """Behind a proxy that serves the app under a prefix (``uvicorn --root-path /wallet``), the
    server puts the prefix in ``path``: the limits still apply, declared or chunked."""
    transport = httpx.ASGITransport(app=small_limits_app, root_path="/wallet")
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        served = await client.post("/wallet/graphql", json={"query": "{ chain { name } }"})
    assert served.status_code == 200, served.text  # the app's routes answer under the prefix

    for declare_length in (True, False):
        upload = Upload(total=TEN_MB)
        await post_raw(
            small_limits_app, path, upload, declare_length=declare_length, root_path="/wallet"
        )
        assert upload.status == 413
        assert upload.taken <= (0 if declare_length else LIMIT + CHUNK)


async def test_a_body_within_the_limit_is_served_whole_declared_or_chunked(
    small_limits_app: Starlette,
) -> None:
    query = b'{"query": "{ chain { name } }"}'
    padded = query + b" " * (LIMIT - len(query))  # exactly the limit

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(padded), CHUNK):
            yield padded[start : start + CHUNK]

    async with client_for(small_limits_app) as client:
        declared = await client.post(
            "/graphql", content=padded, headers={"Content-Type": "application/json"}
        )
        chunked = await client.post(
            "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
        )
        over = await client.post(
            "/graphql", content=padded + b" ", headers={"Content-Type": "application/json"}
        )

    assert declared.status_code == 200, declared.text
    assert declared.json()["data"]["chain"]["name"]
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == declared.json()
    assert over.status_code == 413
    assert over.headers["x-request-id"]  # the outer middleware still sees the refusal
