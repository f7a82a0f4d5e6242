"""Devices and program enrollments through GraphQL."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlmodel import select

from api.container import Services
from programs.models import Program
from tests.support.graphql import gql

SITE = {
    "line1": "1 Market St",
    "city": "San Francisco",
    "region": "CA",
    "postalCode": "94105",
    "country": "US",
}


ENROLLMENT_FIELDS = """
  id status protocol paymentMethod fee connectionId connectionParameters error
  device { id make model } program { id name feePayer }
"""


ADD_DEVICE = """
mutation($input: AddDeviceInput!) {
  addDevice(input: $input) {
    __typename ... on Device { id deviceType } ... on InvalidInput { message field }
  }
}
"""


ENROLL = f"""
mutation($input: EnrollInput!) {{
  enroll(input: $input) {{
    __typename
    ... on Enrollment {{ {ENROLLMENT_FIELDS} }}
    ... on NotEligible {{ message failingChecks {{ name passed reason }} }}
    ... on InsufficientFunds {{ message required available }}
    ... on SponsorRefused {{ message reason }}
    ... on InvalidInput {{ message field }}
  }}
}}
"""


UNENROLL = f"""
mutation($input: UnenrollInput!) {{
  unenroll(input: $input) {{
    __typename
    ... on Enrollment {{ {ENROLLMENT_FIELDS} }}
    ... on InvalidInput {{ message field }}
  }}
}}
"""


VIEWER_ENROLLMENTS = f"{{ viewer {{ enrollments {{ {ENROLLMENT_FIELDS} }} devices {{ id }} }} }}"


async def add_device(client, token: str, make: str, model: str, site: dict | None = None) -> str:
    body = await gql(
        client,
        ADD_DEVICE,
        {
            "input": {
                "make": make,
                "model": model,
                "serial": f"SN-{uuid.uuid4().hex[:10]}",
                "siteAddress": site or SITE,
            }
        },
        token=token,
    )
    assert body["data"]["addDevice"]["__typename"] == "Device", body
    return body["data"]["addDevice"]["id"]


async def program_id(services: Services, external_id: str) -> str:
    async with services.db.session() as session:
        return (
            await session.execute(select(Program.id).where(Program.external_id == external_id))
        ).scalar_one()


async def enroll(client, token: str, **fields: str) -> dict:
    body = await gql(
        client, ENROLL, {"input": {"idempotencyKey": str(uuid.uuid4()), **fields}}, token=token
    )
    assert "errors" not in body, body
    return body["data"]["enroll"]


async def wait_enrollment(client, token: str, enrollment_id: str, *, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = await gql(client, VIEWER_ENROLLMENTS, token=token)
        assert "errors" not in body, body
        node = next(e for e in body["data"]["viewer"]["enrollments"] if e["id"] == enrollment_id)
        if node["status"] not in ("CONNECTING", "UNENROLLING"):
            return node
        assert time.monotonic() < deadline, node
        await asyncio.sleep(0.1)
