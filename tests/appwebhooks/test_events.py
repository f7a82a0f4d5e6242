"""The events for real: a relayed transfer reaching CONFIRMED and an enrollment reaching ACTIVE
each reach the utility's receiver, signed, verified with the ``standardwebhooks`` package."""

from __future__ import annotations

from api.container import Services
from appwebhooks.service import delete_endpoint
from chain.address_book import AddressBook
from chain.deploy import Deployer
from tests.support.activity import indexed
from tests.support.enrollment import add_device, enroll, program_id, wait_enrollment
from tests.support.issuer import TestIssuer
from tests.support.transfers import quote, send
from tests.support.utilities import fresh_utility
from tests.support.wallets import fresh_address, new_customer, wait_for_status
from tests.support.webhook_receiver import running_receiver
from tests.support.webhooks import add_endpoint, sending, wait_until_settled

OVPP = 10**18


async def test_a_confirmed_transfer_reaches_the_utility_signed(
    client, relayer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    async with fresh_utility(services, audience="https://hooks-transfer.test") as (issuer, tenant):
        customer = await new_customer(client, issuer, deployer, contracts, ovpp=100 * OVPP)
        to = fresh_address()
        with running_receiver() as receiver:
            endpoint, secret = await add_endpoint(
                services, tenant, receiver.url, ["transaction.final"]
            )
            receiver.secret = secret
            fields = {"token": "OVPP", "to": to, "amount": "12.5", "feeToken": "OVPP"}
            priced = await quote(client, customer.token, **fields)
            sent = await send(client, customer.token, quote_id=priced["id"], **fields)
            final = await wait_for_status(client, customer.token, sent["id"])
            assert final["status"] == "CONFIRMED"
            async with sending(services):
                (delivery,) = await wait_until_settled(services, endpoint.id)
                await receiver.wait_for(1)

    assert delivery.status == "DELIVERED" and delivery.attempts == 1
    (received,) = receiver.received
    assert received.error is None, received.error
    assert received.headers["webhook-id"] == delivery.event_id
    envelope = received.payload
    assert envelope["type"] == "transaction.final"
    data = envelope["data"]
    assert data["transactionId"] == sent["id"]
    assert (data["kind"], data["status"], data["txHash"]) == (
        "TRANSFER",
        "CONFIRMED",
        final["hash"],
    )
    assert (data["token"], data["amount"], data["amountRaw"]) == (
        "OVPP",
        "12.5",
        str(125 * OVPP // 10),
    )
    assert data["to"].lower() == to.lower()
    assert data["walletAddress"] == customer.address
    assert data["customerSubject"] == customer.subject
    assert "forwardRequests" not in data and "rawTransaction" not in data


async def test_an_enrollment_tells_each_status_it_takes(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    with running_receiver() as receiver:
        endpoint, secret = await add_endpoint(
            services, registry_demo.id, receiver.url, ["enrollment.changed"]
        )
        receiver.secret = secret
        try:
            result = await enroll(
                client,
                customer.token,
                deviceId=device,
                programId=program,
                protocol="OPENADR_3",
                paymentMethod="WALLET",
            )
            final = await wait_enrollment(client, customer.token, result["id"])
            assert final["status"] == "ACTIVE", final
            async with sending(services):
                deliveries = await wait_until_settled(services, endpoint.id, count=2)
                await receiver.wait_for(2)
        finally:
            async with services.db.session() as session:
                await delete_endpoint(session, tenant_id=registry_demo.id, endpoint_id=endpoint.id)

    assert [d.status for d in deliveries] == ["DELIVERED", "DELIVERED"]
    assert [item.error for item in receiver.received] == [None, None]
    events = sorted(receiver.verified(), key=lambda envelope: envelope["timestamp"])
    assert {envelope["type"] for envelope in events} == {"enrollment.changed"}
    assert [envelope["data"]["status"] for envelope in events] == ["CONNECTING", "ACTIVE"]
    active = events[1]["data"]
    assert active["enrollmentId"] == result["id"]
    assert active["programExternalId"] == "dr-battery-2026"
    assert active["customerSubject"] == customer.subject
    assert active["connectionId"] == final["connectionId"]


async def test_tokens_that_arrive_reach_the_utility_once_as_activity_received(
    client, chain_indexer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    """Tokens minted to a customer (no relayed job of ours): the indexer stores the transfer
    and, in the same transaction, the recipient's utility gets one signed `activity.received`;
    reading the range again (a restarted indexer) emits nothing new."""
    async with fresh_utility(services, audience="https://hooks-received.test") as (issuer, tenant):
        customer = await new_customer(client, issuer, deployer, contracts, ovpp=0)
        with running_receiver() as receiver:
            endpoint, secret = await add_endpoint(
                services, tenant, receiver.url, ["activity.received"]
            )
            receiver.secret = secret
            deployer.mint(token=contracts.ovpp_token, to=customer.address, amount=7 * OVPP)
            await indexed(services)
            async with sending(services):
                (delivery,) = await wait_until_settled(services, endpoint.id)
                await receiver.wait_for(1)

    assert delivery.status == "DELIVERED"
    (received,) = receiver.received
    assert received.error is None, received.error
    data = received.payload["data"]
    assert received.payload["type"] == "activity.received"
    assert (data["wallet"], data["amount"], data["raw"]) == (customer.address, "7", str(7 * OVPP))
    assert data["token"]["symbol"] == "OVPP" and data["txHash"].startswith("0x")
