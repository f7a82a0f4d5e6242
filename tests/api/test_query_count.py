"""N+1 guard: the viewer's lists cost as many SQL statements for 50 rows as for 1."""

from __future__ import annotations

import secrets
import uuid

import pytest

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.db import Database
from identity.models import Customer
from programs.models import Device, Enrollment, Program
from programs.payment import ENROLL_TX_GAS
from relayer.forwarder import ZERO_ADDRESS
from relayer.models import JobKind, RelayStatus, RelayTransaction
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.own_stack import OwnStack, Sender, new_sender
from tests.support.query_count import counting_statements
from tests.support.wallets import new_customer

VIEWER_LISTS = """{ viewer {
  enrollments { id status fee device { id serial } program { id name utility feePayer } }
  devices { id serial siteAddress { city } }
} }"""


async def add_enrollments(
    db: Database, *, customer_id: str, count: int, in_flight: Sender | None = None
) -> None:
    """``count`` enrollments, each with a device and a program of its own: ACTIVE, or with
    ``in_flight`` CONNECTING, each waiting on a QUEUED connect job of that sender's wallet."""
    async with db.session() as session:
        customer = await session.get(Customer, customer_id)
        assert customer is not None
        enrollments = []
        for _ in range(count):
            program = Program(
                tenant_id=customer.tenant_id,
                program_id="0x" + secrets.token_hex(32),
                external_id=uuid.uuid4().hex,
                name=f"Program {uuid.uuid4().hex[:8]}",
                connection_fee=0,
                protocols=["OPENADR_3"],
                eligible_device_types=["BATTERY"],
            )
            device = Device(
                customer_id=customer_id,
                device_id="0x" + secrets.token_hex(32),
                model_id="0x" + secrets.token_hex(32),
                make="Acme",
                model="B1",
                serial=uuid.uuid4().hex,
                device_type="BATTERY",
                site_line1="1 Main St",
                site_city="Springfield",
                site_region="CA",
                site_postal_code="94110",
                site_country="US",
            )
            session.add_all([program, device])
            enrollments.append(
                Enrollment(
                    customer_id=customer_id,
                    device_row_id=device.id,
                    program_row_id=program.id,
                    tenant_id=customer.tenant_id,
                    protocol="OPENADR_3",
                    payment_method="WALLET",
                    status="ACTIVE",
                    idempotency_key=uuid.uuid4().hex,
                    request_fingerprint="0" * 64,
                    fee_amount=0,
                )
            )
        await session.flush()  # the enrollments' foreign keys need their rows first
        if in_flight is not None:
            for enrollment in enrollments:
                job = queued_job(in_flight, customer_id=customer_id)
                session.add(job)
                enrollment.status = "CONNECTING"
                enrollment.relay_transaction_id = job.id
            await session.flush()
        session.add_all(enrollments)


def queued_job(sender: Sender, *, customer_id: str) -> RelayTransaction:
    """A connect job no worker takes (the stack runs none): it stays QUEUED."""
    return RelayTransaction(
        wallet_id=sender.wallet_id,
        customer_id=customer_id,
        idempotency_key=uuid.uuid4().hex,
        request_fingerprint="0" * 64,
        kind=JobKind.ENROLL,
        token="OVPP",
        token_address=ZERO_ADDRESS,
        to_address=ZERO_ADDRESS,
        amount=0,
        forwarder_nonce=0,
        forward_requests=[],
        gas_limit=ENROLL_TX_GAS,
        relayer_key_id=sender.relayer_key_id,
        status=RelayStatus.QUEUED,
    )


async def test_viewer_lists_cost_the_same_statements_for_1_and_50_rows(
    client, services: Services, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    viewer = await gql(client, "{ viewer { id } }", token=customer.token)
    customer_id = viewer["data"]["viewer"]["id"]

    statements = {}
    for total, added in ((1, 1), (50, 49)):
        await add_enrollments(services.db, customer_id=customer_id, count=added)
        with counting_statements(services.db) as sent:
            body = await gql(client, VIEWER_LISTS, token=customer.token)
        assert "errors" not in body, body
        lists = body["data"]["viewer"]
        assert len(lists["enrollments"]) == len(lists["devices"]) == total
        assert {e["device"]["id"] for e in lists["enrollments"]} == {
            d["id"] for d in lists["devices"]
        }
        assert lists["enrollments"][0]["program"]["utility"] == "Test Utility"
        statements[total] = sent

    assert len(statements[50]) == len(statements[1]), (
        statements[1].statements,
        statements[50].statements,
    )


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_enrollments_in_flight_cost_the_same_statements_for_1_and_50_rows(
    own_stack: OwnStack, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    """Enrollments waiting on their connect job read all those jobs in one statement, not one
    each (on a stack of the test's own: no worker takes the QUEUED jobs)."""
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    viewer = await gql(own_stack.client, "{ viewer { id } }", token=sender.customer.token)
    customer_id = viewer["data"]["viewer"]["id"]
    db = own_stack.services.db
    statements = {}
    for total, added in ((1, 1), (50, 49)):
        await add_enrollments(db, customer_id=customer_id, count=added, in_flight=sender)
        with counting_statements(db) as sent:
            body = await gql(own_stack.client, VIEWER_LISTS, token=sender.customer.token)
        assert "errors" not in body, body
        enrollments = body["data"]["viewer"]["enrollments"]
        assert [e["status"] for e in enrollments] == ["CONNECTING"] * total
        statements[total] = sent

    assert len(statements[50]) == len(statements[1]), (
        statements[1].statements,
        statements[50].statements,
    )
