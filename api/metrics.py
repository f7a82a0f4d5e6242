"""Prometheus metrics at ``/metrics``: what an operator watches and alerts on.

Two kinds:

- **the deployment's state, read when scraped** from the database and the chain, so a scrape
  of any API process shows the whole deployment, the relayer and onramp workers included
  (they may run as their own processes, which serve no HTTP): relayed transactions waiting in
  each state and the age of the oldest, transactions failed in the last hour, each relayer
  key's native balance and nonces (the ones the database assigned against the chain's), each
  sponsor's funds and spending, card payments waiting on the processor, and Stripe events not
  yet processed. A source that cannot be read shows ``ovpp_scrape_source_up 0`` and leaves its
  metrics out, rather than failing the scrape;
- **this process's own counters**: HTTP requests by route, method and status with their
  duration, and GraphQL operations by root field and outcome.

Who may scrape: with ``OVPP_METRICS_TOKEN`` set, a request must carry
``Authorization: Bearer <token>``; without it, ``/metrics`` answers in development only (in
production it is not there: sponsor budgets and key balances are not for the internet).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
)
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from api.container import Services
from core.db import utc_now
from core.settings import Settings
from onramp import metrics as onramp_metrics
from relayer import metrics as relayer_metrics

logger = logging.getLogger("api.metrics")

SCRAPE_TIMEOUT_SECONDS = 5.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""HTTP methods labelled as they are; any other is ``other`` (clients choose the method)."""
ROUTES = ("/graphql", "/webhooks/stripe", "/healthz", "/readyz", "/metrics")
"""Routes labelled by their path; everything else is ``/app`` (the web app) or ``other``, so
a client cannot grow the label set."""


def route_label(path: str) -> str:
    if path in ROUTES:
        return path
    if path == "/app" or path.startswith("/app/"):
        return "/app"
    return "other"


class Metrics:
    """One application's registry: its process counters and the scrape-time collector."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "ovpp_http_requests",
            "HTTP requests answered by this process.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "ovpp_http_request_duration_seconds",
            "Time to answer an HTTP request in this process (not websocket sessions).",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.graphql_operations = Counter(
            "ovpp_graphql_operations",
            "GraphQL operations executed by this process, by root field (the first of the "
            "operation; `unknown` when it did not parse or validate) and outcome (`ok`, or "
            "`error` when the response carries errors). Typed results such as "
            "InsufficientFunds are `ok`: they are answers.",
            ["operation_type", "field", "outcome"],
            registry=self.registry,
        )

    async def render(self, services: Services | None) -> bytes:
        """The exposition text: this process's counters, then the deployment's state read
        now (into a registry of its own, so concurrent scrapes share nothing)."""
        state = CollectorRegistry(auto_describe=False)
        state.register(_Families(await deployment_state(services, self.settings)))
        return generate_latest(self.registry) + generate_latest(state)


class _Families:
    """A collector of families already read (collectors are synchronous; the reads are not)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


# -- the deployment's state -------------------------------------------------------------------


async def deployment_state(services: Services | None, settings: Settings) -> list[Metric]:
    if services is None:
        return []
    up = GaugeMetricFamily(
        "ovpp_scrape_source_up",
        "1 when this scrape could read the source, 0 when it could not (its metrics are left out).",
        labels=["source"],
    )
    families: list[Metric] = [up]
    readings = await asyncio.gather(
        _bounded(_database_state(services)),
        _bounded(_chain_state(services, settings)),
        return_exceptions=True,
    )
    for source, reading in zip(("database", "chain"), readings, strict=True):
        if isinstance(reading, BaseException):
            if not isinstance(reading, Exception):
                raise reading
            logger.warning("metrics: could not read the %s: %s", source, reading)
            up.add_metric([source], 0)
        else:
            up.add_metric([source], 1)
            families.extend(reading)
    return families


async def _bounded(reading: Any) -> Any:
    async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
        return await reading


async def _database_state(services: Services) -> list[Metric]:
    now = utc_now()
    async with services.db.session() as session:
        relayer = await relayer_metrics.relayer_state(session, now=now)
        onramp = await onramp_metrics.onramp_state(session)
    return [*_relayer_families(relayer, now), *_onramp_families(onramp, now)]


def _relayer_families(state: relayer_metrics.RelayerState, now: datetime) -> list[Metric]:
    waiting = GaugeMetricFamily(
        "ovpp_relay_transactions_waiting",
        "Relayed transactions not final yet, by status.",
        labels=["status"],
    )
    oldest = GaugeMetricFamily(
        "ovpp_relay_oldest_waiting_seconds",
        "Age of the oldest relayed transaction in each waiting status, since it was requested "
        "(0 when there is none).",
        labels=["status"],
    )
    for status, jobs in state.waiting.items():
        waiting.add_metric([status.value], jobs.count)
        oldest.add_metric([status.value], _age(now, jobs.oldest_created_at))
    failed = GaugeMetricFamily(
        "ovpp_relay_transactions_failed_last_hour",
        "Relayed transactions that ended FAILED in the last hour.",
        value=state.failed_last_hour,
    )

    enabled = GaugeMetricFamily(
        "ovpp_relayer_key_enabled",
        "1 for a relayer key that takes new transactions, 0 for one that only finishes its own.",
        labels=["address", "slot"],
    )
    assigned = GaugeMetricFamily(
        "ovpp_relayer_key_next_nonce",
        "The next nonce the database will assign to the key (compare "
        "ovpp_relayer_key_chain_nonce: the difference is what is assigned but not yet mined).",
        labels=["address", "slot"],
    )
    for key in state.keys:
        enabled.add_metric([key.address, str(key.slot)], 1 if key.enabled else 0)
        assigned.add_metric([key.address, str(key.slot)], key.next_nonce)

    sponsor_families = {
        name: GaugeMetricFamily(f"ovpp_sponsor_{name}_wei", help_text, labels=["utility"])
        for name, help_text in (
            ("funds", "Native-gas wei the utility has paid into its sponsorship."),
            ("spent", "Wei charged to the sponsorship so far (reservations until settled)."),
            ("remaining", "Funds less spent: what the sponsorship can still pay."),
            ("period_spent", "Wei charged in the current period."),
            ("period_cap", "The most the sponsorship pays in one period."),
        )
    }
    sponsor_active = GaugeMetricFamily(
        "ovpp_sponsor_active",
        "1 while the utility sponsors, 0 when it stopped.",
        labels=["utility"],
    )
    for sponsor in state.sponsors:
        values = {
            "funds": sponsor.funds_wei,
            "spent": sponsor.spent_wei,
            "remaining": sponsor.remaining_wei,
            "period_spent": sponsor.period_spent_wei,
            "period_cap": sponsor.period_cap_wei,
        }
        for name, value in values.items():
            sponsor_families[name].add_metric([sponsor.utility], value)
        sponsor_active.add_metric([sponsor.utility], 1 if sponsor.active else 0)
    return [waiting, oldest, failed, enabled, assigned, *sponsor_families.values(), sponsor_active]


def _onramp_families(state: onramp_metrics.OnrampState, now: datetime) -> list[Metric]:
    onramp = GaugeMetricFamily(
        "ovpp_onramp_payments_waiting",
        "Card payments the processor still acts on, by status (DELIVERY_FAILED: until their "
        "refund goes through, or for an operator when disputed).",
        labels=["status"],
    )
    for status, count in state.waiting.items():
        onramp.add_metric([status.value], count)
    clawback = GaugeMetricFamily(
        "ovpp_onramp_clawbacks_required",
        "Delivered card payments whose money went back afterwards: an operator's decision "
        "(until recorded with ovpp-wallet onramp resolve).",
        value=state.clawbacks_required,
    )
    refund_failed = GaugeMetricFamily(
        "ovpp_onramp_refunds_failed",
        "Card payments not delivered whose refund failed after Stripe accepted it "
        "(REFUND_FAILED): the money is in the Stripe balance, an operator returns it (until "
        "recorded with ovpp-wallet onramp resolve).",
        value=state.refunds_failed,
    )
    events = GaugeMetricFamily(
        "ovpp_stripe_events_unprocessed",
        "Stripe webhook events received and not yet processed.",
        value=state.unprocessed_events,
    )
    events_age = GaugeMetricFamily(
        "ovpp_stripe_oldest_unprocessed_event_seconds",
        "Age of the oldest unprocessed Stripe event since it was received (0 when none).",
        value=_age(now, state.oldest_unprocessed_event_at),
    )
    return [onramp, clawback, refund_failed, events, events_age]


async def _chain_state(services: Services, settings: Settings) -> list[Metric]:
    async with services.db.session() as session:
        keys = await relayer_metrics.key_slots(session)
    readings = await relayer_metrics.keys_on_chain(services.chain.rpc, keys)
    balance = GaugeMetricFamily(
        "ovpp_relayer_key_balance_wei",
        "A relayer key's native balance: what it has left to pay gas with.",
        labels=["address", "slot"],
    )
    nonce = GaugeMetricFamily(
        "ovpp_relayer_key_chain_nonce",
        "The key's pending nonce as the node reports it.",
        labels=["address", "slot"],
    )
    for key in readings:
        if key.balance_wei is not None:
            balance.add_metric([key.address, str(key.slot)], key.balance_wei)
        if key.pending_nonce is not None:
            nonce.add_metric([key.address, str(key.slot)], key.pending_nonce)
    low = GaugeMetricFamily(
        "ovpp_relayer_low_balance_threshold_wei",
        "OVPP_RELAYER_LOW_BALANCE_WEI: a key below it shows in /readyz and the logs.",
        value=settings.relayer_low_balance_wei,
    )
    return [balance, nonce, low]


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    return max((now - then).total_seconds(), 0.0)


# -- this process's counters ------------------------------------------------------------------


class MetricsMiddleware:
    """Counts and times each HTTP request by route, method and status (pure ASGI: the body
    streams through untouched). A label set's children are looked up once (the label sets are
    bounded: see ``route_label`` and ``METHODS``)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            requests, duration = self._children_of(scope, status)
            requests.inc()
            duration.observe(time.perf_counter() - started)

    def _children_of(self, scope: Scope, status: int) -> tuple[Any, Any]:
        method = scope.get("method", "")
        key = (route_label(scope.get("path", "")), method if method in METHODS else "other", status)
        children = self._children.get(key)
        if children is None:
            route, method_label, _status = key
            children = self._children[key] = (
                self.metrics.http_requests.labels(route, method_label, str(status)),
                self.metrics.http_duration.labels(route),
            )
        return children


def graphql_operations_extension(metrics: Metrics) -> type[SchemaExtension]:
    """A schema extension counting operations into ``metrics``."""

    class CountOperations(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            failed = False
            try:
                yield
            except BaseException:  # a parse or validation error is raised through the hook
                failed = True
                raise
            finally:
                self._count(failed=failed)

        def _count(self, *, failed: bool) -> None:
            context = self.execution_context
            operation_type = field = "unknown"
            with contextlib.suppress(RuntimeError):  # no document, or no such operation in it
                operation_type = context.operation_type.value
            refused = failed or bool(context.pre_execution_errors)
            if not refused:
                # Only a document that passed validation names fields of the schema: any
                # other would let a client grow the label set at will.
                document = context.graphql_document
                field = _first_root_field(document, context.operation_name) or field
            result = context.result
            errors = refused or getattr(result, "errors", None)
            metrics.graphql_operations.labels(
                operation_type, field, "error" if errors else "ok"
            ).inc()

    return CountOperations


def _first_root_field(document: Any, operation_name: str | None) -> str | None:
    """The first root field's name (not its alias) of the operation executed, looking through
    fragments; with a validated document, a field of the schema."""
    if document is None:
        return None
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if operation_name and (definition.name is None or definition.name.value != operation_name):
            continue
        return _first_field(definition.selection_set, fragments, depth=0)
    return None


def _first_field(selection_set: Any, fragments: dict[str, Any], *, depth: int) -> str | None:
    if selection_set is None or depth > len(fragments):
        return None
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            return selection.name.value
        if isinstance(selection, FragmentSpreadNode):
            nested = fragments.get(selection.name.value)
            found = _first_field(
                nested.selection_set if nested else None, fragments, depth=depth + 1
            )
        else:  # an inline fragment
            found = _first_field(selection.selection_set, fragments, depth=depth + 1)
        if found is not None:
            return found
    return None


# -- the route --------------------------------------------------------------------------------


def metrics_route_handler(metrics: Metrics) -> Any:
    token = metrics.settings.metrics_token
    expected = token.get_secret_value().encode() if token is not None else None
    exposed = expected is not None or metrics.settings.is_development

    async def serve_metrics(request: Request) -> Response:
        if not exposed:
            return PlainTextResponse("Not Found", status_code=404)
        if expected is not None:
            given = request.headers.get("authorization", "")
            scheme, _, credential = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                credential.strip().encode(), expected
            ):
                return PlainTextResponse(
                    "a bearer token (OVPP_METRICS_TOKEN) is required",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        services = getattr(request.app.state, "services", None)
        return Response(await metrics.render(services), media_type=CONTENT_TYPE_LATEST)

    return serve_metrics
