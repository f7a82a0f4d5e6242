"""Fixtures the API tests share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import uvicorn

from tests.support.ports import free_port


@pytest.fixture
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test gives: no OVPP_* variable of the machine running the tests."""
    for name in os.environ:
        if name.startswith("OVPP_"):
            monkeypatch.delenv(name)


@pytest.fixture
async def ws_url(app) -> AsyncIterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.02)
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await serving
