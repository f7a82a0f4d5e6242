"""The administrator's app webhooks through GraphQL: endpoints made, listed, rotated and
deleted, the delivery log as a connection, and the wall between utilities."""

from __future__ import annotations

from api.container import Services
from appwebhooks.models import EventType
from appwebhooks.service import emit
from tests.support.graphql import error_codes, gql
from tests.support.utilities import fresh_utility

CREATE = """
mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    __typename
    ... on WebhookEndpointSecret { secret endpoint { id url eventTypes enabled createdAt } }
    ... on InvalidInput { message field }
  }
}
"""
VIEW = """
query($first: Int!, $after: String) {
  utilityAdmin {
    webhookEndpoints { id url eventTypes enabled createdAt }
    webhookDeliveries(first: $first, after: $after) {
      edges { cursor node { id eventId eventType endpointId status attempts lastResponseStatus
                            lastError nextAttemptAt deliveredAt createdAt } }
      pageInfo { hasNextPage endCursor }
    }
  }
}
"""
DELETE = "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { id enabled } }"
ROTATE = "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret endpoint { id } } }"


async def _create(client, token: str, url: str, types: list[str] | None = None) -> dict:
    body = await gql(
        client, CREATE, {"input": {"url": url, "eventTypes": types or []}}, token=token
    )
    assert "errors" not in body, body
    return body["data"]["createWebhookEndpoint"]


async def test_an_administrator_makes_lists_rotates_and_deletes_endpoints(
    client, services: Services
) -> None:
    async with fresh_utility(services, audience="https://hooks-api.test") as (issuer, tenant):
        admin = issuer.mint(sub="admin", scope="utility:admin")
        made = await _create(client, admin, "http://127.0.0.1:9/hooks", ["transaction.final"])
        assert made["__typename"] == "WebhookEndpointSecret"
        assert made["secret"].startswith("whsec_")
        endpoint = made["endpoint"]
        assert endpoint["eventTypes"] == ["transaction.final"] and endpoint["enabled"]

        refused = await _create(client, admin, "http://127.0.0.1:9/x", ["balance.changed"])
        assert refused == {
            "__typename": "InvalidInput",
            "message": refused["message"],
            "field": "eventTypes",
        }

        rotated = await gql(client, ROTATE, {"id": endpoint["id"]}, token=admin)
        new_secret = rotated["data"]["rotateWebhookSecret"]["secret"]
        assert new_secret.startswith("whsec_") and new_secret != made["secret"]

        for index in range(3):
            async with services.db.session() as session:
                await emit(session, tenant, EventType.TRANSACTION_FINAL, {"n": index})
        first = await gql(client, VIEW, {"first": 2}, token=admin)
        view = first["data"]["utilityAdmin"]
        assert view["webhookEndpoints"] == [endpoint]
        page = view["webhookDeliveries"]
        assert [edge["node"]["status"] for edge in page["edges"]] == ["PENDING", "PENDING"]
        assert page["pageInfo"]["hasNextPage"] is True
        rest = await gql(
            client, VIEW, {"first": 2, "after": page["pageInfo"]["endCursor"]}, token=admin
        )
        last = rest["data"]["utilityAdmin"]["webhookDeliveries"]
        assert len(last["edges"]) == 1 and last["pageInfo"]["hasNextPage"] is False
        nodes = [edge["node"] for edge in page["edges"] + last["edges"]]
        assert len({node["eventId"] for node in nodes}) == 3
        assert {node["endpointId"] for node in nodes} == {endpoint["id"]}
        assert [node["createdAt"] for node in nodes] == sorted(
            (node["createdAt"] for node in nodes), reverse=True
        )

        deleted = await gql(client, DELETE, {"id": endpoint["id"]}, token=admin)
        assert deleted["data"]["deleteWebhookEndpoint"] == {"id": endpoint["id"], "enabled": False}
        after = await gql(client, VIEW, {"first": 5}, token=admin)
        assert after["data"]["utilityAdmin"]["webhookEndpoints"] == []
        log = after["data"]["utilityAdmin"]["webhookDeliveries"]["edges"]
        assert {edge["node"]["status"] for edge in log} == {"FAILED"}  # the log stays


async def test_another_utilitys_administrator_sees_and_touches_nothing(
    client, services: Services
) -> None:
    async with (
        fresh_utility(services, audience="https://hooks-a.test") as (issuer_a, tenant_a),
        fresh_utility(services, audience="https://hooks-b.test") as (issuer_b, _tenant_b),
    ):
        admin_a = issuer_a.mint(sub="admin", scope="utility:admin")
        admin_b = issuer_b.mint(sub="admin", scope="utility:admin")
        endpoint = (await _create(client, admin_a, "http://127.0.0.1:9/a"))["endpoint"]
        async with services.db.session() as session:
            await emit(session, tenant_a, EventType.ENROLLMENT_CHANGED, {"status": "ACTIVE"})

        seen_by_b = await gql(client, VIEW, {"first": 50}, token=admin_b)
        assert seen_by_b["data"]["utilityAdmin"]["webhookEndpoints"] == []
        assert seen_by_b["data"]["utilityAdmin"]["webhookDeliveries"]["edges"] == []
        for mutation in (DELETE, ROTATE):
            refused = await gql(client, mutation, {"id": endpoint["id"]}, token=admin_b)
            assert error_codes(refused) == ["NOT_FOUND"]
        seen_by_a = await gql(client, VIEW, {"first": 50}, token=admin_a)
        assert seen_by_a["data"]["utilityAdmin"]["webhookEndpoints"] == [endpoint]
        assert len(seen_by_a["data"]["utilityAdmin"]["webhookDeliveries"]["edges"]) == 1

        customer = issuer_a.mint(sub="customer", scope="wallet:read wallet:sign")
        forbidden = await gql(
            client, CREATE, {"input": {"url": "http://127.0.0.1:9/c"}}, token=customer
        )
        assert error_codes(forbidden) == ["FORBIDDEN"]
