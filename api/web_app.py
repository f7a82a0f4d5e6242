"""The reference web app (``clients/web``) at ``/app``: plain files, no build step, and the one
thing it cannot know by itself, where to sign in (``/app/config.json``).

``/app/callback`` (the OAuth redirect URI) serves the app's page too; the app finishes the
authorization-code + PKCE exchange there. The app's GraphQL documents are the published
operations (``clients/operations``), served at ``/app/operations/``.

Every ``/app`` response carries the Content-Security-Policy of ``web_app_content_security_policy``
(set by ``api.middleware.SecurityHeadersMiddleware``): built from the same settings as
``config.json``, so the page may reach exactly what it is told to use.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from core.defaults import DEV_OIDC_CLIENT_ID, LOCAL_STRIPE_CARD_JS_PATH
from core.settings import Settings

CLIENTS_DIRECTORY = Path(__file__).resolve().parent.parent / "clients"
WEB_APP_DIRECTORY = CLIENTS_DIRECTORY / "web"
OPERATIONS_DIRECTORY = CLIENTS_DIRECTORY / "operations"

WEB_APP_SCOPES = "openid email offline_access wallet:read wallet:sign"
"""``offline_access``: a refresh token, so the app renews an expired access token itself."""
LOCALSTRIPE_PUBLISHABLE_KEY = "pk_test_ovpp_localstripe"
"""localstripe accepts any ``pk_`` key; real Stripe needs the account's publishable key."""
STRIPE_JS_URL = "https://js.stripe.com/v3/"

STRIPE_JS_SCRIPT_SOURCES = ("https://js.stripe.com", "https://*.js.stripe.com")
STRIPE_JS_FRAME_SOURCES = (
    "https://js.stripe.com",
    "https://*.js.stripe.com",
    "https://hooks.stripe.com",
)
STRIPE_JS_CONNECT_SOURCES = ("https://api.stripe.com",)
"""What Stripe.js needs of a page's policy, per Stripe's integration security guide
(docs.stripe.com/security/guide), less ``https://maps.googleapis.com``: that is for the Address
Element's autocomplete, and the app uses only the card element."""


def web_app_routes(settings: Settings) -> list[BaseRoute]:
    async def config(request: Request) -> Response:
        # The configured origin, never the request's Host header: a forged Host would point
        # the app's sign-in and API at another server (and a shared cache at everyone's).
        origin = settings.resolved_public_url
        if origin is None:
            return JSONResponse(
                {"error": "the web app is not configured: set OVPP_PUBLIC_URL"}, status_code=503
            )
        return JSONResponse(web_app_config(settings, origin=origin))

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
    issuer, audience, client_id = _sign_in(settings)
    stripe_js, stripe_key = _card_form(settings)
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


def web_app_content_security_policy(settings: Settings) -> str:
    """The policy of every ``/app`` response, allowing what the app of ``web_app_config`` uses
    and nothing else: its own files and API (the subscription's WebSocket too: ``'self'``
    matches ``ws:``/``wss:`` on the same host), the issuer's origin (the browser fetches the
    discovery document, the token and the revocation endpoint) and the operator's
    ``OVPP_WEB_APP_CONNECT_ORIGINS``, and the card form's Stripe.js only when the Buy screen is
    on. No inline script or style, no plugin, no ``<base>``, no frame but Stripe's, no form
    submitted anywhere (the app's forms are handled by script), and no page may frame the app.
    """
    issuer, _audience, _client_id = _sign_in(settings)
    stripe_js, stripe_key = _card_form(settings)
    scripts, frames = ["'self'"], []
    connects = ["'self'", *([_origin(issuer)] if issuer else []), *settings.web_app_connect_origins]
    if stripe_key and settings.is_development:
        # localstripe's stand-in: the one script, which calls back to where it came from
        scripts.append(stripe_js)
        connects.append(_origin(stripe_js))
    elif stripe_key:
        scripts.extend(STRIPE_JS_SCRIPT_SOURCES)
        frames.extend(STRIPE_JS_FRAME_SOURCES)
        connects.extend(STRIPE_JS_CONNECT_SOURCES)
    directives = {
        "default-src": ["'self'"],
        "script-src": scripts,
        "connect-src": list(dict.fromkeys(connects)),
        "frame-src": frames or ["'none'"],
        "worker-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


def _sign_in(settings: Settings) -> tuple[str, str, str]:
    """Issuer, audience and client id: the embedded provider in development, else the first
    trusted utility's (none configured: empty, and the app cannot sign in)."""
    if settings.is_development:
        return settings.dev_issuer, settings.dev_audience, DEV_OIDC_CLIENT_ID
    tenant = settings.tenants[0] if settings.tenants else None
    return (
        tenant.issuer if tenant else "",
        tenant.audience if tenant else "",
        settings.web_app_client_id,
    )


def _card_form(settings: Settings) -> tuple[str, str | None]:
    """Stripe.js's URL and the publishable key; no key: no Buy screen."""
    if settings.is_development:
        return (
            settings.resolved_stripe_api_base + LOCAL_STRIPE_CARD_JS_PATH,
            settings.stripe_publishable_key or LOCALSTRIPE_PUBLISHABLE_KEY,
        )
    return STRIPE_JS_URL, settings.stripe_publishable_key if settings.onramp_enabled else None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
