"""The ASGI application: starlette routes around the strawberry GraphQL endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from api.container import ONRAMP_FOLLOWERS, Services
from api.context import RequestContext
from api.graphql.schema import build_schema
from api.metrics import (
    Metrics,
    MetricsMiddleware,
    graphql_operations_extension,
    metrics_route_handler,
)
from api.middleware import (
    BodySizeLimitMiddleware,
    RequestIdMiddleware,
    SecurityHeadersMiddleware,
)
from api.routes import healthz, readyz
from api.stripe_webhook import stripe_webhook
from api.web_app import web_app_content_security_policy, web_app_routes
from api.websocket import SizedWebSocketAdapter, WalletTransportWSHandler
from core.settings import Settings


class WalletGraphQL(GraphQL[RequestContext, None]):
    # Over graphql-transport-ws the context built here is the connection's: each operation
    # runs with one of its own (``api.websocket``).
    graphql_transport_ws_handler_class = WalletTransportWSHandler
    websocket_adapter_class = SizedWebSocketAdapter  # type: ignore[assignment]

    async def get_context(self, request: Any, response: Response | None = None) -> RequestContext:
        return RequestContext(
            services=request.app.state.services, request=request, response=response
        )

    def parse_json(self, data: str | bytes) -> Any:
        """An HTTP body (or a GET's ``variables``/``extensions``) is one JSON object, else 400:
        strawberry would answer ``null``, ``123`` or ``"x"`` with a 500. Batches are off, so
        a list is refused too. Socket messages are decoded elsewhere (``decode_json``)."""
        try:
            document = self.decode_json(data)
        except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError for non-UTF-8
            raise HTTPException(400, "the body is not JSON") from error
        if not isinstance(document, dict):
            raise HTTPException(400, 'the body must be a JSON object: {"query": "..."}')
        return document


class WalletApp(Starlette):
    """Starlette with ``outer_middleware`` outside its own error handling: Starlette puts its
    ``ServerErrorMiddleware`` outermost, so a 500 it answers would skip middleware given the
    usual way; these see every response (its security headers, request id and count)."""

    def __init__(self, *, outer_middleware: Sequence[Middleware], **kwargs: Any) -> None:
        self.outer_middleware = list(outer_middleware)
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self.outer_middleware):
            app = cls(app, *args, **kwargs)
        return app


def _outer_middleware(settings: Settings, metrics: Metrics) -> list[Middleware]:
    """Outermost first: every answer, a refusal for size included, is counted, carries a
    request id and the security headers."""
    return [
        Middleware(MetricsMiddleware, metrics=metrics),
        Middleware(RequestIdMiddleware),
        Middleware(
            SecurityHeadersMiddleware,
            web_app_path="/app",
            web_app_content_security_policy=web_app_content_security_policy(settings),
        ),
        Middleware(
            BodySizeLimitMiddleware,
            limits={
                "/graphql": settings.graphql_max_body_bytes,
                "/webhooks/stripe": settings.stripe_webhook_max_body_bytes,
            },
        ),
    ]


def create_app(
    settings: Settings,
    *,
    services: Services | None = None,
    run_relayer: bool = False,
    run_onramp_processor: bool = False,
    run_indexer: bool = False,
    run_program_server: bool = False,
    run_app_webhooks: bool = False,
) -> Starlette:
    """The app. ``services`` may be given (tests share one); otherwise the lifespan builds them.
    With ``run_relayer`` the lifespan also runs the relayer worker beside the API, and with
    ``run_onramp_processor`` the onramp processor (Stripe events → token deliveries), which the
    webhook route wakes, with ``run_indexer`` the chain indexer, with ``run_program_server``
    the program server (OpenADR 2.0b VTN) on its own port, and with ``run_app_webhooks`` the app
    webhooks' delivery worker. Tests run the processor themselves and set
    ``app.state.onramp_processor`` (``onramp.processor.start_onramp_processor``)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        app.state.services = services if services is not None else await Services.start(settings)
        app.state.relayer = None
        app.state.onramp_processor = None
        app.state.indexer = None
        app.state.program_server = None
        app.state.app_webhooks = None
        try:
            if run_app_webhooks:
                from appwebhooks.delivery import start_app_webhooks

                app.state.app_webhooks = await start_app_webhooks(app.state.services)
            if run_relayer:
                from relayer.runner import start_relayer

                app.state.relayer = await start_relayer(app.state.services)
            else:
                from relayer.keys import ensure_a_relayer_key

                await ensure_a_relayer_key(app.state.services, count=settings.relayer_keys)
            if run_onramp_processor:  # without Stripe: its followers only
                from onramp.processor import start_onramp_processor

                app.state.onramp_processor = await start_onramp_processor(
                    app.state.services, followers=ONRAMP_FOLLOWERS
                )
            if run_indexer:
                from indexer.runner import start_indexer

                app.state.indexer = await start_indexer(
                    app.state.services, name=f"indexer-{os.getpid()}"
                )
            if run_program_server:
                from programs.vtn.server import start_program_server

                app.state.program_server = await start_program_server(
                    db=app.state.services.db, settings=settings
                )
            yield
        finally:
            if app.state.program_server is not None:
                await app.state.program_server.shutdown()
            if app.state.indexer is not None:
                await app.state.indexer.shutdown()
            if app.state.app_webhooks is not None:
                await app.state.app_webhooks.shutdown()
            if app.state.onramp_processor is not None:
                await app.state.onramp_processor.shutdown()
            if app.state.relayer is not None:
                await app.state.relayer.shutdown()
            if owned:
                await app.state.services.close()

    metrics = Metrics(settings)
    graphql = WalletGraphQL(
        build_schema(settings, extensions=[graphql_operations_extension(metrics)]),
        graphql_ide="graphiql" if settings.is_development else None,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
        max_subscriptions_per_connection=settings.graphql_ws_max_subscriptions,
        allow_queries_via_get=False,
    )
    app = WalletApp(
        outer_middleware=_outer_middleware(settings, metrics),
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_route_handler(metrics), methods=["GET"]),
            Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            *web_app_routes(settings),
        ],
        lifespan=lifespan,
    )
    if services is not None:
        app.state.services = services
        app.state.relayer = None
        app.state.onramp_processor = None
        app.state.indexer = None
    return app
