"""The headers of the whole app, through the real ASGI app (``create_app``): the web app's
Content-Security-Policy at ``/app``, built from the settings for each mode, and on every response
``nosniff`` and ``no-referrer``. The browser half (the journey runs under the policy without a
violation, and an injected script is refused) is ``tests/api/test_web_app.py``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from api.app import create_app
from core.settings import Settings

UTILITY = {
    "slug": "bay-power",
    "name": "Bay Power",
    "issuer": "https://login.baypower.example/realms/customers",
    "audience": "https://wallet.baypower.example",
}
CARD_PAYMENTS = {
    "stripe_api_key": "sk_live_secret_never_shown",
    "stripe_webhook_secret": "whsec_live_secret_never_shown",
    "stripe_publishable_key": "pk_live_51Public",
}
LOCKED_DOWN = {
    "default-src": ["'self'"],
    "worker-src": ["'self'"],  # the service worker, /app/sw.js
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],  # every form of the app is handled by script
    "frame-ancestors": ["'none'"],
}


pytestmark = pytest.mark.usefixtures("no_outside_settings")


async def responses(settings: Settings, *paths: str) -> list[httpx.Response]:
    """GETs through the app as ``serve`` builds it (no lifespan: nothing here needs services)."""
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(
        transport=transport, base_url="https://wallet.baypower.example"
    ) as client:
        return [await client.get(path) for path in paths]


async def web_app_policy(settings: Settings) -> dict[str, list[str]]:
    """The policy of the app's page and of its OAuth callback (the same), by directive."""
    page, callback = await responses(settings, "/app/", "/app/callback?code=c&state=s")
    assert page.status_code == callback.status_code == 200
    policy = page.headers["content-security-policy"]
    assert callback.headers["content-security-policy"] == policy
    directives = [directive.split() for directive in policy.split("; ")]
    return {name: sources for name, *sources in directives}


async def test_development_allows_the_embedded_provider_and_localstripes_card_script() -> None:
    settings = Settings(
        _env_file=None, environment="development", dev_oidc_port=9411, localstripe_port=8431
    )

    assert await web_app_policy(settings) == LOCKED_DOWN | {
        "script-src": ["'self'", "http://127.0.0.1:8431/js.stripe.com/v3/ovpp-card.js"],
        "connect-src": ["'self'", "http://127.0.0.1:9411", "http://127.0.0.1:8431"],
        "frame-src": ["'none'"],  # localstripe's stand-in frames nothing
    }


async def test_production_allows_the_utilitys_issuer_and_stripe_js() -> None:
    settings = Settings(
        _env_file=None, environment="production", tenants=[UTILITY], **CARD_PAYMENTS
    )

    assert await web_app_policy(settings) == LOCKED_DOWN | {
        "script-src": ["'self'", "https://js.stripe.com", "https://*.js.stripe.com"],
        "connect-src": ["'self'", "https://login.baypower.example", "https://api.stripe.com"],
        "frame-src": [
            "https://js.stripe.com",
            "https://*.js.stripe.com",
            "https://hooks.stripe.com",
        ],
    }


async def test_without_card_payments_nothing_of_stripe_is_allowed() -> None:
    settings = Settings(_env_file=None, environment="production", tenants=[UTILITY])

    policy = await web_app_policy(settings)

    assert policy == LOCKED_DOWN | {
        "script-src": ["'self'"],
        "connect-src": ["'self'", "https://login.baypower.example"],
        "frame-src": ["'none'"],
    }


async def test_a_provider_with_endpoints_elsewhere_is_allowed_by_the_operators_origins() -> None:
    settings = Settings(
        _env_file=None,
        environment="production",
        tenants=[UTILITY],
        web_app_connect_origins="https://oauth2.baypower.example/, https://revoke.example:8443",
    )

    policy = await web_app_policy(settings)

    assert policy["connect-src"] == [
        "'self'",
        "https://login.baypower.example",
        "https://oauth2.baypower.example",
        "https://revoke.example:8443",
    ]


@pytest.mark.parametrize(
    "value",
    [
        "https://login.example.com/token",  # a path: an origin is all a header word may be
        "login.example.com",
        "javascript:alert(1)",
        "https://login.example.com; script-src *",
        "https://*.example.com",
        "https://user@login.example.com",
        "https://login.example.com?x",
    ],
)
def test_only_origins_are_accepted_as_extra_connect_origins(value: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        Settings(_env_file=None, web_app_connect_origins=value)


@pytest.mark.parametrize("environment", ["development", "production"])
async def test_every_response_is_nosniff_and_no_referrer_and_only_the_app_has_the_policy(
    environment: Any,
) -> None:
    settings = Settings(_env_file=None, environment=environment, tenants=[UTILITY])
    app_paths = ("/app/", "/app/app.js", "/app/config.json", "/app/operations/Viewer.graphql")
    api_paths = ("/healthz", "/nowhere", "/apple")

    answered = await responses(settings, *app_paths, *api_paths)

    for path, response in zip(app_paths + api_paths, answered, strict=True):
        assert response.headers["x-content-type-options"] == "nosniff", path
        # The OAuth callback's URL carries the code: no request from the app may pass it on.
        assert response.headers["referrer-policy"] == "no-referrer", path
        in_app = path.startswith("/app/")
        assert ("content-security-policy" in response.headers) == in_app, path
        assert response.headers.get("x-frame-options") == ("DENY" if in_app else None), path


async def test_the_app_keeps_its_policy_when_served_under_a_root_path() -> None:
    """Behind a proxy that mounts the backend under a prefix (``uvicorn --root-path``), the
    server puts the prefix in ``path``: the web app's pages still carry its policy."""
    settings = Settings(_env_file=None, environment="production", tenants=[UTILITY])
    transport = httpx.ASGITransport(app=create_app(settings), root_path="/wallet")
    async with httpx.AsyncClient(transport=transport, base_url="https://w.example") as client:
        page = await client.get("/wallet/app/")
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_the_api_answers_nosniff_and_no_referrer_and_graphiql_is_not_under_the_apps_policy(
    client: httpx.AsyncClient,
) -> None:
    answer = await client.post("/graphql", json={"query": "{ __typename }"})
    graphiql = await client.get("/graphql", headers={"accept": "text/html"})  # development

    assert answer.json() == {"data": {"__typename": "Query"}}
    assert "graphiql" in graphiql.text.lower()
    for response in (answer, graphiql):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        # GraphiQL's page runs inline script from a CDN: the app's policy is the app's alone.
        assert "content-security-policy" not in response.headers


async def test_an_unexpected_error_still_answers_with_the_headers_and_is_counted() -> None:
    """A 500 comes from Starlette's outermost error handler: the headers, the request id and
    the count must still be on it. (An app whose services never started fails every request.)"""
    app = create_app(Settings(_env_file=None, environment="development"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        failed = await client.post("/graphql", json={"query": "{ __typename }"})
        metrics = await client.get("/metrics")
    assert failed.status_code == 500
    assert failed.headers["x-content-type-options"] == "nosniff"
    assert failed.headers["referrer-policy"] == "no-referrer"
    assert failed.headers["x-request-id"]
    assert 'ovpp_http_requests_total{method="POST",route="/graphql",status="500"} 1.0' in (
        metrics.text
    )
