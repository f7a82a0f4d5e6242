"""Pure ASGI middleware (no response buffering)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def route_path(scope: Scope) -> str:
    """The path the app's routes see: ``path`` without the ``root_path`` the app is mounted
    under (ASGI servers include it in ``path``), as Starlette's router takes it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        rest = path[len(root_path) :]
        if rest == "" or rest.startswith("/"):
            return rest
    return path


class RequestIdMiddleware:
    """Gives every request an id (the caller's ``X-Request-ID`` if sane) for logs and support."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers", [])).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class SecurityHeadersMiddleware:
    """Every HTTP response says ``X-Content-Type-Options: nosniff`` (a file is only ever what its
    type says) and ``Referrer-Policy: no-referrer`` (the web app's OAuth callback URL carries an
    authorization code, which no request from that page may pass on in a Referer). Responses
    under ``web_app_path`` also carry the app's Content-Security-Policy and, for browsers older
    than its ``frame-ancestors``, ``X-Frame-Options: DENY``."""

    def __init__(
        self, app: ASGIApp, *, web_app_path: str, web_app_content_security_policy: str
    ) -> None:
        self.app = app
        self.web_app_path = web_app_path.rstrip("/")
        self.every_response = {
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
        }
        self.web_app_responses = self.every_response | {
            "content-security-policy": web_app_content_security_policy,
            "x-frame-options": "DENY",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        in_web_app = path == self.web_app_path or path.startswith(self.web_app_path + "/")
        added = self.web_app_responses if in_web_app else self.every_response

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimitMiddleware:
    """Refuses with 413 a request body larger than its path's limit (the path under the app's
    ``root_path``) before the app reads it:
    at once when ``Content-Length`` says so, else as soon as the chunks that arrive (a chunked
    body has no length) add up to more. A body within the limit is handed on whole; the app
    would have read it whole anyway. Paths without a limit pass through untouched."""

    def __init__(self, app: ASGIApp, *, limits: Mapping[str, int]) -> None:
        self.app = app
        self.limits = dict(limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limits.get(route_path(scope)) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _refuse_body(send, limit=limit, malformed=not declared.isdigit())
            return
        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _refuse_body(send, limit=limit, malformed=False)
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def receive_buffered() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: the client's disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, receive_buffered, send)


async def _refuse_body(send: Send, *, limit: int, malformed: bool) -> None:
    status, error = (
        (400, "the Content-Length header is not a number")
        if malformed
        else (413, f"the body is larger than {limit} bytes")
    )
    body = json.dumps({"error": error}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
