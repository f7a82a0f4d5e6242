"""Small helpers to call the API the way a client app does."""

from __future__ import annotations

from typing import Any

import httpx


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def error_codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code", "") for error in body.get("errors", [])]


VIEWER_BALANCES = """
query {
  viewer {
    id
    email
    wallet {
      address asOfBlock stale
      balances { token { symbol name decimals address } amount raw pending }
    }
  }
}
"""
