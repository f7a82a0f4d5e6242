"""Enrolling devices through the OpenVPP registry, through the GraphQL API, checked on chain."""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from devsupport.oidc_login import obtain_access_token
from programs.admin import utility_wallet
from programs.models import Enrollment as EnrollmentRow
from programs.models import Program
from programs.registry import registry_of
from relayer import sponsorship
from relayer.models import RelayTransaction, Sponsor
from tests.conftest import AUDIENCE
from tests.support.enrollment import SITE, UNENROLL, add_device, enroll, program_id, wait_enrollment
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.wallets import ChainReader, new_customer

OVPP = 10**18


async def counts(services: Services) -> tuple[int, int]:
    async with services.db.session() as session:
        jobs = (
            await session.execute(select(func.count()).select_from(RelayTransaction))
        ).scalar_one()
        enrollments = (
            await session.execute(select(func.count()).select_from(EnrollmentRow))
        ).scalar_one()
    return jobs, enrollments


async def test_wallet_payment_connects_the_demo_battery_and_moves_the_fee(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    registry = registry_of(services.chain)
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    utility = await registry.utility(bytes.fromhex(_utility_id_hex(registry_demo.slug)))
    recipient_before = chain.ovpp_of(utility.fee_recipient)

    check = await gql(
        client,
        "query($i: CheckEnrollmentInput!) { checkEnrollment(input: $i) { "
        "ready fee feePayer gasSponsored gasFee checks { name passed reason } } }",
        {"i": {"deviceId": device, "programId": program, "protocol": "OPENADR_3"}},
        token=customer.token,
    )
    verdict = check["data"]["checkEnrollment"]
    assert verdict["ready"] is True and verdict["fee"] == "5" and verdict["feePayer"] == "CUSTOMER"
    assert {c["name"] for c in verdict["checks"]} >= {
        "PROTOCOL_SUPPORTED",
        "SITE_IN_TERRITORY",
        "PAYER_CAN_PAY",
    }

    result = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert result["__typename"] == "Enrollment" and result["status"] == "CONNECTING", result
    final = await wait_enrollment(client, customer.token, result["id"])
    assert final["status"] == "ACTIVE", final
    assert final["connectionParameters"]["vtnUrl"] == "https://vtn.demo-utility.example/openadr3"

    connection = await registry.connection(bytes.fromhex(final["connectionId"][2:]))
    assert connection.owner == customer.address and connection.status == 1
    async with services.db.session() as session:
        row = await session.get(EnrollmentRow, result["id"])
        job = await session.get(RelayTransaction, row.relay_transaction_id)
    assert chain.ovpp_of(utility.fee_recipient) == recipient_before + 5 * OVPP
    assert chain.ovpp_of(customer.address) == 50 * OVPP - 5 * OVPP - job.fee_amount
    assert chain.native(customer.address) == 0


async def test_sponsor_payment_leaves_the_customer_untouched(
    oidc,
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(
        client, demo_issuer, deployer, contracts, ovpp=3 * OVPP, stablecoin=2 * 10**6
    )
    sponsor_wallet = await utility_wallet(services, registry_demo)
    sponsor_before = chain.ovpp_of(sponsor_wallet.address)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "sponsored-battery-2026")
    result = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="IEEE_2030_5",
        paymentMethod="SPONSOR",
    )
    assert result["__typename"] == "Enrollment", result
    final = await wait_enrollment(client, customer.token, result["id"])
    assert final["status"] == "ACTIVE", final
    assert chain.ovpp_of(customer.address) == 3 * OVPP
    assert chain.usd_of(customer.address) == 2 * 10**6
    assert chain.native(customer.address) == 0
    assert chain.ovpp_of(sponsor_wallet.address) == sponsor_before - 5 * OVPP

    admin = await obtain_access_token(
        issuer=oidc.issuer,
        email="ops@demo-utility.example",
        scope="openid utility:admin",
        resource=AUDIENCE,
    )
    body = await gql(
        client,
        "{ utilityAdmin { awareness { externalId deviceType activeConnections } "
        "enrollments { id status paymentMethod } } }",
        token=admin,
    )
    assert "errors" not in body, body
    view = body["data"]["utilityAdmin"]
    sponsored = {
        (a["externalId"], a["deviceType"]): a["activeConnections"] for a in view["awareness"]
    }
    assert sponsored[("sponsored-battery-2026", "BATTERY")] >= 1
    assert {"id": result["id"], "status": "ACTIVE", "paymentMethod": "SPONSOR"} in view[
        "enrollments"
    ]


async def test_a_mismatched_device_is_not_eligible_and_nothing_is_charged_or_written(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
    thermostat = await add_device(client, customer.token, "ThermaSense", "TS-3")
    program = await program_id(services, "dr-battery-2026")
    before = await counts(services)
    result = await enroll(
        client,
        customer.token,
        deviceId=thermostat,
        programId=program,
        protocol="MATTER",
        paymentMethod="WALLET",
    )
    assert result["__typename"] == "NotEligible", result
    failing = {c["name"] for c in result["failingChecks"]}
    assert failing == {
        "PROTOCOL_SUPPORTED",
        "DEVICE_TYPE_ELIGIBLE",
        "CAPABILITY_MINIMUMS",
        "UTILITY_ENDPOINT",
    }
    assert all(c["reason"] and c["passed"] is False for c in result["failingChecks"])
    far_away = await add_device(
        client, customer.token, "Voltstack", "VS-13.5", {**SITE, "postalCode": "10001"}
    )
    result = await enroll(
        client,
        customer.token,
        deviceId=far_away,
        programId=program,
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert {c["name"] for c in result["failingChecks"]} == {"SITE_IN_TERRITORY"}
    assert await counts(services) == before
    assert chain.ovpp_of(customer.address) == 50 * OVPP
    registry = registry_of(services.chain)
    async with services.db.session() as session:
        row = (await session.execute(select(Program).where(Program.id == program))).scalar_one()
    from programs.models import Device

    async with services.db.session() as session:
        device_row = await session.get(Device, thermostat)
    assert (
        await registry.active_connection(
            bytes.fromhex(device_row.device_id[2:]), bytes.fromhex(row.program_id[2:])
        )
        is None
    )


async def test_too_little_ovpp_is_insufficient_funds_and_nothing_is_written(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=1 * OVPP)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    before = await counts(services)
    result = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert result["__typename"] == "InsufficientFunds", result
    assert await counts(services) == before
    assert chain.ovpp_of(customer.address) == 1 * OVPP
    card = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_3",
        paymentMethod="CARD",
    )
    # Paying by card is the way out: the enrollment waits for the card payment (see
    # tests/onramp/test_onramp.py), and nothing moved on chain.
    assert card["__typename"] == "Enrollment" and card["status"] == "FEE_PENDING", card
    assert chain.ovpp_of(customer.address) == 1 * OVPP


async def test_one_active_connection_per_device_and_program_and_unenroll_frees_it(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=100 * OVPP)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    first = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_2_0B",
        paymentMethod="WALLET",
    )
    active = await wait_enrollment(client, customer.token, first["id"])
    assert active["status"] == "ACTIVE"
    assert active["connectionParameters"]["venName"].startswith("ven-")
    again = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_2_0B",
        paymentMethod="WALLET",
    )
    # Refused before the routing (whose NOT_ALREADY_CONNECTED check reads only the chain).
    assert again["__typename"] == "InvalidInput", again
    assert again["field"] == "deviceId" and "already has an enrollment" in again["message"]

    body = await gql(
        client,
        UNENROLL,
        {"input": {"enrollmentId": first["id"], "idempotencyKey": "leave-1"}},
        token=customer.token,
    )
    assert body["data"]["unenroll"]["status"] == "UNENROLLING", body
    done = await wait_enrollment(client, customer.token, first["id"])
    assert done["status"] == "UNENROLLED"
    registry = registry_of(services.chain)
    connection = await registry.connection(bytes.fromhex(active["connectionId"][2:]))
    assert connection.status == 2  # DISCONNECTED
    rejoin = await enroll(
        client,
        customer.token,
        deviceId=device,
        programId=program,
        protocol="OPENADR_2_0B",
        paymentMethod="WALLET",
    )
    assert rejoin["__typename"] == "Enrollment", rejoin
    assert (await wait_enrollment(client, customer.token, rejoin["id"]))["status"] == "ACTIVE"


def _utility_id_hex(slug: str) -> str:
    from registry_client.onchain import utility_id_of

    return utility_id_of(slug).hex()


async def test_a_gas_sponsor_switched_off_while_enrolling_is_a_typed_refusal(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``enroll`` decides from an unlocked read that the utility sponsors the gas (which fixes
    how many forward requests it signs), and only then locks the sponsor. Switched off by an
    operator in between, the sponsor refuses: a typed ``SponsorRefused``, never an unexpected
    error, nothing queued, and never a fallback to charging the customer."""
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    async with services.db.session() as session:
        demo_sponsor = await sponsorship.sponsor_of_tenant(session, registry_demo.id)
        assert demo_sponsor is not None
        demo_sponsor.sponsors_transfers = True  # sponsors the gas of its customers' actions
        session.add(demo_sponsor)
    read_unlocked = sponsorship.sponsor_of_tenant
    switched_off: list[str] = []

    async def switched_off_after_the_read(session, tenant_id: str):  # type: ignore[no-untyped-def]
        found = await read_unlocked(session, tenant_id)
        if tenant_id == registry_demo.id and not switched_off:
            async with services.db.session() as operator:
                row = await operator.get_one(Sponsor, found.id)
                row.active = False
                operator.add(row)
            switched_off.append(tenant_id)
        return found

    monkeypatch.setattr(sponsorship, "sponsor_of_tenant", switched_off_after_the_read)
    jobs_before, enrollments_before = await counts(services)
    try:
        result = await enroll(
            client,
            customer.token,
            deviceId=device,
            programId=program,
            protocol="OPENADR_3",
            paymentMethod="WALLET",
        )
    finally:
        monkeypatch.undo()
        async with services.db.session() as session:
            row = await session.get_one(Sponsor, demo_sponsor.id)
            row.active, row.sponsors_transfers = True, False
            session.add(row)
    assert switched_off, "the sponsor was never read unlocked"
    assert (result["__typename"], result.get("reason")) == ("SponsorRefused", "NOT_ELIGIBLE")
    assert await counts(services) == (jobs_before, enrollments_before)
    assert ChainReader(deployer, contracts).ovpp_of(customer.address) == 50 * OVPP
