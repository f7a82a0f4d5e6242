"""Introspection is off in production unless the operator turns it on, and on in development
(GraphiQL needs it). Apps build on the published ``clients/schema.graphql`` instead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.container import Services
from core.settings import Settings

SCHEMA_QUERY = "{ __schema { queryType { name } } }"
TYPE_QUERY = '{ __type(name: "Query") { name } }'
PUBLIC_QUERY = "{ __typename chain { name } }"


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def answers(settings: Settings, services: Services, query: str) -> dict:
    async with client_for(create_app(settings, services=services)) as client:
        response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("query", [SCHEMA_QUERY, TYPE_QUERY])
async def test_production_refuses_introspection_by_default(
    settings: Settings, services: Services, query: str
) -> None:
    production = settings.model_copy(update={"environment": "production"})

    body = await answers(production, services, query)

    assert body.get("data") is None
    assert "introspection" in body["errors"][0]["message"].lower()
    public = await answers(production, services, PUBLIC_QUERY)
    assert public["data"]["__typename"] == "Query", public  # plain documents still run
    assert public["data"]["chain"]["name"]


@pytest.mark.parametrize(
    ("environment", "introspection"),
    [("development", None), ("production", True)],
    ids=["development", "production, turned on"],
)
async def test_introspection_answers_in_development_or_when_turned_on(
    settings: Settings, services: Services, environment: str, introspection: bool | None
) -> None:
    chosen = settings.model_copy(
        update={"environment": environment, "graphql_introspection": introspection}
    )

    body = await answers(chosen, services, SCHEMA_QUERY)

    assert body == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
