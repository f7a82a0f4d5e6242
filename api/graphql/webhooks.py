"""The utility administrator's app webhooks (scope ``utility:admin``): its endpoints, their
delivery log, and the mutations that make, rotate and delete them. Always the caller's own
utility: another utility's endpoint id is not found."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated, Protocol

import strawberry

from api.context import RequestContext
from api.graphql.common import PageInfo, decode_cursor, encode_cursor, require_page_size
from api.graphql.failures import InvalidInput, typed_failures
from appwebhooks import service
from appwebhooks.models import EventType
from appwebhooks.models import WebhookDelivery as DeliveryRow
from appwebhooks.models import WebhookEndpoint as EndpointRow
from identity.principal import Scope

Info = strawberry.Info[RequestContext, None]
EVENT_TYPES = ", ".join(f"`{t.value}`" for t in EventType)


@strawberry.type(description="Where the utility receives its app webhooks.")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    event_types: list[str] = strawberry.field(
        description=f"The event types it receives ({EVENT_TYPES}); empty: all of them."
    )
    enabled: bool
    created_at: datetime

    @classmethod
    def from_row(cls, row: EndpointRow) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(row.id),
            url=row.url,
            event_types=list(row.event_types),
            enabled=row.enabled and row.deleted_at is None,
            created_at=row.created_at,
        )


@strawberry.type(description="An endpoint and its signing secret, shown this once only.")
class WebhookEndpointSecret:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(
        description="`whsec_` and base64: the key receivers verify signatures with "
        "(Standard Webhooks). Never shown again; `rotateWebhookSecret` makes a new one."
    )


@strawberry.enum(description="PENDING (attempts to come), DELIVERED (a 2xx) or FAILED.")
class WebhookDeliveryStatus(Enum):
    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


@strawberry.type(description="One event's delivery to one endpoint.")
class WebhookDelivery:
    id: strawberry.ID
    event_id: str = strawberry.field(description="The `webhook-id` every attempt carried.")
    event_type: str
    endpoint_id: strawberry.ID
    status: WebhookDeliveryStatus
    attempts: int
    last_response_status: int | None = strawberry.field(
        description="The HTTP status of the last attempt; null when none came back."
    )
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed (at most the first 200 bytes of the answer)."
    )
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: DeliveryRow) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(row.id),
            event_id=row.event_id,
            event_type=row.event_type,
            endpoint_id=strawberry.ID(row.endpoint_id),
            status=WebhookDeliveryStatus(row.status),
            attempts=row.attempts,
            last_response_status=row.last_response_status,
            last_error=row.last_error,
            next_attempt_at=row.next_attempt_at,
            delivered_at=row.delivered_at,
            created_at=row.created_at,
        )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="https (outside development), a public address.")
    event_types: list[str] = strawberry.field(
        default_factory=list, description=f"Of {EVENT_TYPES}; empty: all of them."
    )


CreateWebhookEndpointResult = Annotated[
    WebhookEndpointSecret | InvalidInput, strawberry.union("CreateWebhookEndpointResult")
]


class _OfUtility(Protocol):
    tenant_id: str


async def webhook_endpoints(
    root: strawberry.Parent[_OfUtility], info: Info
) -> list[WebhookEndpoint]:
    async with info.context.read_session() as session:
        rows = await service.endpoints(session, root.tenant_id)
    return [WebhookEndpoint.from_row(row) for row in rows]


async def webhook_deliveries(
    root: strawberry.Parent[_OfUtility], info: Info, first: int = 20, after: str | None = None
) -> WebhookDeliveryConnection:
    require_page_size(first)
    async with info.context.read_session() as session:
        rows = await service.deliveries(
            session,
            tenant_id=root.tenant_id,
            first=first,
            after=decode_cursor(after) if after else None,
        )
    edges = [
        WebhookDeliveryEdge(
            cursor=encode_cursor(created_at=row.created_at, row_id=row.id),
            node=WebhookDelivery.from_row(row),
        )
        for row in rows[:first]
    ]
    return WebhookDeliveryConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
    )


async def _admins_utility(info: Info) -> str:
    principal = await info.context.principal()
    principal.require(Scope.UTILITY_ADMIN)
    return principal.tenant_id


@typed_failures(CreateWebhookEndpointResult)
async def create_webhook_endpoint(
    info: Info, input: CreateWebhookEndpointInput
) -> CreateWebhookEndpointResult:  # type: ignore[valid-type]
    tenant_id = await _admins_utility(info)
    services = info.context.services
    row, secret = await service.create_endpoint(
        await info.context.session(),
        tenant_id=tenant_id,
        url=input.url,
        event_types=input.event_types,
        keyring=services.keyring,
        allow_private=services.settings.is_development,
    )
    return WebhookEndpointSecret(endpoint=WebhookEndpoint.from_row(row), secret=secret)


async def rotate_webhook_secret(info: Info, id: strawberry.ID) -> WebhookEndpointSecret:
    tenant_id = await _admins_utility(info)
    row, secret = await service.rotate_secret(
        await info.context.session(),
        tenant_id=tenant_id,
        endpoint_id=str(id),
        keyring=info.context.services.keyring,
    )
    return WebhookEndpointSecret(endpoint=WebhookEndpoint.from_row(row), secret=secret)


async def delete_webhook_endpoint(info: Info, id: strawberry.ID) -> WebhookEndpoint:
    tenant_id = await _admins_utility(info)
    row = await service.delete_endpoint(
        await info.context.session(), tenant_id=tenant_id, endpoint_id=str(id)
    )
    return WebhookEndpoint.from_row(row)
