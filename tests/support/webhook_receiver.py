"""A utility's webhook receiver, for real: an HTTP server on a free port that verifies every
request with the ``standardwebhooks`` package, the way a utility's backend would."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.support.ports import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    payload: Any | None  # the verified JSON; None when it did not verify
    error: str | None


@dataclass
class Receiver:
    """Answers each request with the next of ``answers`` (then 200), after ``delay`` seconds.
    ``secret`` is the endpoint's ``whsec_…``, set once the endpoint exists."""

    answers: list[int] = field(default_factory=list)
    delay: float = 0.0
    secret: str | None = None
    received: list[Received] = field(default_factory=list)
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def verified(self) -> list[Any]:
        return [item.payload for item in self.received if item.error is None]

    async def wait_for(self, count: int, *, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} webhooks arrived")
            await asyncio.sleep(0.05)
        return self.received

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        headers = dict(request.headers)
        try:
            assert self.secret is not None
            payload, error = Webhook(self.secret).verify(body, headers), None
        except (WebhookVerificationError, AssertionError) as failure:
            payload, error = None, repr(failure)
        self.received.append(Received(headers=headers, body=body, payload=payload, error=error))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.answers.pop(0) if self.answers else 200
        if 300 <= status < 400:
            return Response(status_code=status, headers={"location": self.url + "/elsewhere"})
        return PlainTextResponse("x" * 5000 if status >= 500 else "ok", status_code=status)


@contextmanager
def running_receiver(answers: list[int] | None = None, *, delay: float = 0.0) -> Iterator[Receiver]:
    receiver = Receiver(answers=list(answers or []), delay=delay)
    app = Starlette(routes=[Route("/hooks", receiver._hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=receiver.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.02)
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(timeout=5)
