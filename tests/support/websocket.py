"""graphql-transport-ws as a client app speaks it: connect with a token, subscribe, receive."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection


async def connect(url: str, token: str) -> ClientConnection:
    socket = await websockets.connect(url, subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
    await socket.send(
        json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    )
    assert json.loads(await socket.recv())["type"] == "connection_ack"
    return socket


async def subscribe(
    socket: ClientConnection, operation_id: str, query: str, variables: dict[str, Any]
) -> None:
    payload = {"query": query, "variables": variables}
    await socket.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": payload}))


async def receive(socket: ClientConnection, *, timeout: float = 15.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout=timeout))
