"""An administrator's registry change is relayed: the mutation queues it, and it lands once
its transactions confirm. Tests wait for that the way an admin app does: by reading
``utilityAdmin.registryChanges`` (which also moves the change on)."""

from __future__ import annotations

import asyncio
import time

from tests.support.graphql import gql

CHANGES = "query { utilityAdmin { registryChanges(first: 1) { id status error target txHash } } }"
OPEN = ("REGISTERING", "SENDING")


async def newest_change(client, token: str) -> dict | None:  # type: ignore[no-untyped-def]
    body = await gql(client, CHANGES, token=token)
    assert "errors" not in body, body
    changes = body["data"]["utilityAdmin"]["registryChanges"]
    return changes[0] if changes else None


async def until_landed(client, token: str, *, timeout: float = 60) -> dict | None:  # type: ignore[no-untyped-def]
    """The utility's newest change once it has ended (``None`` if it never asked one)."""
    deadline = time.monotonic() + timeout
    while True:
        change = await newest_change(client, token)
        if change is None or change["status"] not in OPEN:
            return change
        assert time.monotonic() < deadline, f"the change did not land: {change}"
        await asyncio.sleep(0.2)


async def admin_change(client, query: str, variables: dict, *, token: str) -> dict:  # type: ignore[no-untyped-def]
    """Send an admin mutation and wait for the change it asked to be CONFIRMED; the mutation's
    own answer."""
    body = await gql(client, query, variables, token=token)
    assert "errors" not in body, body
    change = await until_landed(client, token)
    assert change is None or change["status"] == "CONFIRMED", change
    return body
