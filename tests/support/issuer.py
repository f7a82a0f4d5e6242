"""A test OpenID issuer whose signing keys the tests hold, so they can mint the tokens a real
provider never would (expired, not yet valid, foreign audience, unknown kid, …). It serves
real discovery and JWKS documents over HTTP; the API fetches them as it would in production."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.ports import free_port


def b64url(data: bytes) -> str:
    """A JWT segment: base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


TEST_CLIENT_ID = "test-client"
"""The client the test issuers' tokens come from (allowed to administer the test utilities)."""


class TestIssuer:
    __test__ = False

    def __init__(self, *, audience: str) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.audience = audience
        self.signing_key = RSAKey.generate_key(
            2048, parameters={"kid": "test-key-1", "alg": "RS256"}
        )
        self.published_keys = [self.signing_key]
        # While set, discovery and JWKS requests hang (a provider that is down without saying
        # so) until it is cleared, then answer as usual.
        self.hanging = False
        # While set, the discovery document served instead of the real one (a broken provider).
        self.discovery_document: Any = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def of_provider(cls, *, issuer: str, audience: str, keys_file: Path) -> TestIssuer:
        """Mints as a running provider whose private JWKS file the tests can read (the
        development provider's): its tenant's customers, without a login walk. Not started:
        the provider serves its own discovery and keys."""
        minter = cls(audience=audience)
        minter.issuer = issuer
        minter.signing_key = RSAKey.import_key(json.loads(keys_file.read_text())["keys"][0])
        minter.published_keys = [minter.signing_key]
        return minter

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.as_dict(private=False) for key in self.published_keys]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": f"test-{uuid.uuid4().hex[:12]}",
            "email": "tester@example.com",
            "client_id": TEST_CLIENT_ID,
            "scope": "wallet:read wallet:sign",
            "iat": now,
            "exp": now + 600,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def mint(
        self, *, key: RSAKey | None = None, header: dict[str, Any] | None = None, **claims: Any
    ) -> str:
        signing_key = key or self.signing_key
        token_header = {"alg": "RS256", "typ": "at+jwt", "kid": signing_key.kid}
        token_header.update(header or {})
        return jwt.encode(token_header, self.claims(**claims), signing_key)

    async def _while_hanging(self) -> None:
        while self.hanging:  # noqa: ASYNC110 (a flag the test thread flips)
            await asyncio.sleep(0.02)

    def start(self) -> None:
        async def discovery(_request: Request) -> JSONResponse:
            await self._while_hanging()
            if self.discovery_document is not None:
                return JSONResponse(self.discovery_document)
            return JSONResponse({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"})

        async def jwks(_request: Request) -> JSONResponse:
            await self._while_hanging()
            return JSONResponse(self.jwks())

        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
            ]
        )
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test issuer did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.hanging = False
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
