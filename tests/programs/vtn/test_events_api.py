"""createEvent and cancelEvent as an administrator sees them: checked inputs, idempotency per
key, the tenant walls; and the program server's refusal to run without TLS outside
development."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from api.container import Services
from core.errors import ConfigurationError
from core.settings import Settings
from programs.vtn.server import ProgramServer
from tests.support.enrollment import program_id
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.program_server import CANCEL_EVENT, CREATE_EVENT, demo_admin


def event_input(program: str, **overrides: object) -> dict:
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    return {
        "programId": program,
        "start": start.replace(microsecond=0).isoformat(),
        "durationMinutes": 60,
        "signal": {"level": 1},
        "idempotencyKey": f"event-{uuid.uuid4().hex[:8]}",
        **overrides,
    }


async def create(client, token: str, values: dict) -> dict:
    body = await gql(client, CREATE_EVENT, {"input": values}, token=token)
    assert "errors" not in body, body
    return body["data"]["createEvent"]


async def test_events_are_checked_idempotent_and_walled(
    client,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    other_issuer: TestIssuer,
) -> None:
    admin = demo_admin(demo_issuer)
    program = await program_id(services, "dr-battery-2026")
    values = event_input(program)
    first = await create(client, admin, values)
    assert first["__typename"] == "DemandResponseEvent", first
    assert first["signal"] == {"type": "SIMPLE", "level": 1.0, "targetKw": None}
    assert (await create(client, admin, values))["id"] == first["id"]
    reused = await create(client, admin, {**values, "durationMinutes": 90})
    assert reused["__typename"] == "InvalidInput" and reused["field"] == "idempotencyKey"

    refusals = {
        "durationMinutes": {"durationMinutes": 0},
        "start": {"start": (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()},
        "signal.level": {"signal": {"level": 7}},
        "signal.targetKw": {"signal": {"type": "LOAD_DISPATCH"}},
    }
    for field, change in refusals.items():
        refused = await create(client, admin, event_input(program, **change))
        assert refused["__typename"] == "InvalidInput" and refused["field"] == field, refused
    # Inputs that once reached arithmetic: the end of an event in year 9999, a target of 1e300 kW.
    far = {"start": "9999-12-31T23:00:00+00:00", "durationMinutes": 1440}
    huge = {"signal": {"type": "LOAD_DISPATCH", "targetKw": 1e300}}
    for field, change in (("start", far), ("signal.targetKw", huge)):
        refused = await create(client, admin, event_input(program, **change))
        assert refused["__typename"] == "InvalidInput" and refused["field"] == field, refused
    dispatch = await create(
        client, admin, event_input(program, signal={"type": "LOAD_DISPATCH", "targetKw": 4.5})
    )
    assert dispatch["signal"] == {"type": "LOAD_DISPATCH", "level": 1.0, "targetKw": 4.5}

    other_admin = other_issuer.mint(sub="other-admin", scope="utility:admin")
    body = await gql(client, CANCEL_EVENT, {"id": first["id"]}, token=other_admin)
    assert body["data"]["cancelEvent"]["__typename"] == "InvalidInput", body
    customer = demo_issuer.mint(sub=f"customer-{uuid.uuid4().hex[:6]}")
    body = await gql(client, CREATE_EVENT, {"input": event_input(program)}, token=customer)
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    for _ in range(2):  # cancelling again changes nothing
        body = await gql(client, CANCEL_EVENT, {"id": first["id"]}, token=admin)
        assert body["data"]["cancelEvent"]["status"] == "CANCELLED", body


def test_outside_development_the_program_server_needs_tls(settings: Settings) -> None:
    production = settings.model_copy(update={"environment": "production"})
    assert production.program_server_problems()
    with pytest.raises(ConfigurationError, match="TLS with client certificates"):
        ProgramServer(db=None, settings=production)  # type: ignore[arg-type]
    exposed = settings.model_copy(update={"program_server_host": "10.0.0.5"})
    with pytest.raises(ConfigurationError, match="loopback"):
        ProgramServer(db=None, settings=exposed)  # type: ignore[arg-type]
    partial = settings.model_copy(update={"program_server_tls_cert_file": "server.pem"})
    assert "go together" in partial.program_server_problems()[0]
