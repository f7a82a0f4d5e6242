"""The reference web app (``clients/web``) at ``/app``: plain files, no build step, and the one
thing it cannot know by itself, where to sign in (``/app/config.json``).

``/app/callback`` (the OAuth redirect URI) serves the app's page too; the app finishes the
authorization-code + PKCE exchange there. The app's GraphQL documents are the published
operations (``clients/operations``), served at ``/app/operations/``.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from core.settings import Settings
from identity.dev_provider import DEFAULT_CLIENT_ID
from onramp.localstripe import CARD_STRIPE_JS_PATH

CLIENTS_DIRECTORY = Path(__file__).resolve().parent.parent / "clients"
WEB_APP_DIRECTORY = CLIENTS_DIRECTORY / "web"
OPERATIONS_DIRECTORY = CLIENTS_DIRECTORY / "operations"

WEB_APP_SCOPES = "openid email offline_access wallet:read wallet:sign"
"""``offline_access``: a refresh token, so the app renews an expired access token itself."""
LOCALSTRIPE_PUBLISHABLE_KEY = "pk_test_ovpp_localstripe"
"""localstripe accepts any ``pk_`` key; real Stripe needs the account's publishable key."""


def web_app_routes(settings: Settings) -> list[BaseRoute]:
    async def config(request: Request) -> Response:
        return JSONResponse(web_app_config(settings, origin=_origin_of(request)))

    async def callback(request: Request) -> Response:
        return FileResponse(WEB_APP_DIRECTORY / "index.html")

    return [
        Route("/app/config.json", config, methods=["GET"]),
        Route("/app/callback", callback, methods=["GET"]),
        Mount("/app/operations", StaticFiles(directory=OPERATIONS_DIRECTORY)),
        Mount("/app", StaticFiles(directory=WEB_APP_DIRECTORY, html=True)),
    ]


def web_app_config(settings: Settings, *, origin: str) -> dict[str, str | None]:
    """Sign-in and card settings for the app served at ``origin``. In development: the
    embedded provider and localstripe; otherwise the first trusted utility, whose provider must
    know ``OVPP_WEB_APP_CLIENT_ID`` and this origin's redirect URI, and Stripe.js with
    ``OVPP_STRIPE_PUBLISHABLE_KEY`` when card payments are configured (no key: no Buy screen)."""
    if settings.is_development:
        issuer, audience = settings.dev_issuer, settings.dev_audience
        client_id = DEFAULT_CLIENT_ID
        stripe_js = settings.resolved_stripe_api_base + CARD_STRIPE_JS_PATH
        stripe_key = settings.stripe_publishable_key or LOCALSTRIPE_PUBLISHABLE_KEY
    else:
        tenant = settings.tenants[0] if settings.tenants else None
        issuer = tenant.issuer if tenant else ""
        audience = tenant.audience if tenant else ""
        client_id = settings.web_app_client_id
        stripe_js = "https://js.stripe.com/v3/"
        stripe_key = settings.stripe_publishable_key if settings.onramp_enabled else None
    return {
        "issuer": issuer,
        "clientId": client_id,
        "audience": audience,
        "scope": WEB_APP_SCOPES,
        "redirectUri": f"{origin}/app/callback",
        "graphqlUrl": f"{origin}/graphql",
        "stripeJsUrl": stripe_js,
        "stripePublishableKey": stripe_key,
    }


def _origin_of(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"
