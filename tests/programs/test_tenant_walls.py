"""What an enrollment may not cross: another utility's programs (a customer of utility A
cannot check, enroll in or leave utility B's programs, whatever the payment method, and B's
sponsor and wallet are untouched), and a second live enrollment of one device in one program
(refused before anything is queued, concurrent pairs included)."""

from __future__ import annotations

import asyncio
import uuid

from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from onramp.models import OnrampPayment
from programs.admin import utility_wallet
from programs.models import Enrollment, EnrollmentStatus
from relayer import sponsorship
from relayer.models import RelayTransaction
from tests.support.enrollment import ENROLL, SITE, UNENROLL, add_device, enroll, program_id
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.wallets import new_customer
from wallet.models import Wallet

OVPP = 10**18
CHECK = """
query($i: CheckEnrollmentInput!) { checkEnrollment(input: $i) { ready fee feePayer } }
"""


async def _wallet(services: Services, address: str) -> Wallet:
    async with services.db.session() as session:
        return (await session.execute(select(Wallet).where(Wallet.address == address))).scalar_one()


async def _ledger(services: Services, *, tenant, wallets: list[Wallet], customer_id: str) -> tuple:
    """B's sponsor's spending and funds, the jobs of these wallets, and the customer's card
    payments and enrollments: what an enrollment refused for its utility must not change."""
    async with services.db.session() as session:
        sponsor = await sponsorship.sponsor_of_tenant(session, tenant.id)
        jobs = (
            await session.execute(
                select(func.count())
                .select_from(RelayTransaction)
                .where(RelayTransaction.wallet_id.in_([w.id for w in wallets]))
            )
        ).scalar_one()
        payments = (
            await session.execute(
                select(func.count())
                .select_from(OnrampPayment)
                .where(OnrampPayment.customer_id == customer_id)
            )
        ).scalar_one()
        enrollments = (
            await session.execute(
                select(func.count())
                .select_from(Enrollment)
                .where(Enrollment.customer_id == customer_id)
            )
        ).scalar_one()
    spending = (sponsor.spent_wei, sponsor.period_spent_wei, sponsor.funds_wei) if sponsor else None
    return spending, jobs, payments, enrollments


async def test_a_customer_cannot_check_enroll_in_or_leave_another_utilitys_programs(
    client,
    relayer,
    registry_demo,
    services: Services,
    test_issuer: TestIssuer,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A customer of the test utility (A) with a device inside the demo utility's (B)
    territory tries each path into B's programs: every one is refused as InvalidInput, and
    B's sponsor, B's utility wallet and A's wallet have no job, no payment and no row."""
    b_wallet = await utility_wallet(services, registry_demo)
    b_customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
    b_device = await add_device(client, b_customer.token, "Voltstack", "VS-13.5")
    wallet_paid = await program_id(services, "dr-battery-2026")
    sponsored = await program_id(services, "sponsored-battery-2026")
    b_enrolled = await enroll(
        client,
        b_customer.token,
        deviceId=b_device,
        programId=wallet_paid,
        protocol="OPENADR_3",
        paymentMethod="WALLET",
    )
    assert b_enrolled["__typename"] == "Enrollment", b_enrolled

    a_customer = await new_customer(client, test_issuer, deployer, contracts, ovpp=50 * OVPP)
    a_wallet = await _wallet(services, a_customer.address)
    a_device = await add_device(client, a_customer.token, "Voltstack", "VS-13.5", SITE)
    ledger = {"tenant": registry_demo, "wallets": [b_wallet, a_wallet]}
    before = await _ledger(services, **ledger, customer_id=a_wallet.customer_id)

    check = await gql(
        client,
        CHECK,
        {"i": {"deviceId": a_device, "programId": sponsored, "protocol": "IEEE_2030_5"}},
        token=a_customer.token,
    )
    assert error_codes(check) == ["INVALID_INPUT"], check
    assert "another utility" in check["errors"][0]["message"]

    for program, protocol, method in (
        (wallet_paid, "OPENADR_3", "WALLET"),
        (sponsored, "IEEE_2030_5", "SPONSOR"),
        (wallet_paid, "OPENADR_3", "CARD"),
    ):
        refused = await enroll(
            client,
            a_customer.token,
            deviceId=a_device,
            programId=program,
            protocol=protocol,
            paymentMethod=method,
        )
        assert refused["__typename"] == "InvalidInput", (method, refused)
        assert refused["field"] == "programId" and "another utility" in refused["message"]

    # B's customer's enrollment is nobody else's to leave.
    body = await gql(
        client,
        UNENROLL,
        {"input": {"enrollmentId": b_enrolled["id"], "idempotencyKey": str(uuid.uuid4())}},
        token=a_customer.token,
    )
    assert body["data"]["unenroll"]["__typename"] == "InvalidInput", body
    assert await _ledger(services, **ledger, customer_id=a_wallet.customer_id) == before

    # An enrollment of A's customer in B's program, made before utilities were walled off,
    # cannot be left at B's expense either.
    async with services.db.session() as session:
        legacy = Enrollment(
            customer_id=a_wallet.customer_id,
            device_row_id=a_device,
            program_row_id=wallet_paid,
            tenant_id=registry_demo.id,
            protocol="OPENADR_3",
            payment_method="WALLET",
            status=EnrollmentStatus.ACTIVE,
            idempotency_key=str(uuid.uuid4()),
            request_fingerprint="legacy",
            fee_amount=5 * OVPP,
            connection_id="0x" + "11" * 32,
        )
        session.add(legacy)
        legacy_id = legacy.id
    before = await _ledger(services, **ledger, customer_id=a_wallet.customer_id)
    body = await gql(
        client,
        UNENROLL,
        {"input": {"enrollmentId": legacy_id, "idempotencyKey": str(uuid.uuid4())}},
        token=a_customer.token,
    )
    refused = body["data"]["unenroll"]
    assert refused["__typename"] == "InvalidInput", body
    assert refused["field"] == "enrollmentId" and "another utility" in refused["message"]
    assert await _ledger(services, **ledger, customer_id=a_wallet.customer_id) == before
    async with services.db.session() as session:
        assert (await session.get(Enrollment, legacy_id)).status == EnrollmentStatus.ACTIVE


async def _jobs_and_live(services: Services, wallet: Wallet, device: str) -> tuple[int, int]:
    async with services.db.session() as session:
        jobs = (
            await session.execute(
                select(func.count())
                .select_from(RelayTransaction)
                .where(RelayTransaction.wallet_id == wallet.id)
            )
        ).scalar_one()
        live = (
            await session.execute(
                select(func.count())
                .select_from(Enrollment)
                .where(
                    Enrollment.device_row_id == device,
                    Enrollment.status.in_(("FEE_PENDING", "CONNECTING", "ACTIVE", "UNENROLLING")),
                )
            )
        ).scalar_one()
    return jobs, live


async def test_a_second_enrollment_of_a_device_in_the_same_program_is_refused_before_the_chain(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
    wallet = await _wallet(services, customer.address)
    device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
    program = await program_id(services, "dr-battery-2026")
    fields = {"deviceId": device, "programId": program, "protocol": "OPENADR_3"}
    variables = {"input": {**fields, "paymentMethod": "WALLET", "idempotencyKey": "join-1"}}
    first = (await gql(client, ENROLL, variables, token=customer.token))["data"]["enroll"]
    assert first["__typename"] == "Enrollment", first
    assert await _jobs_and_live(services, wallet, device) == (1, 1)

    for method in ("WALLET", "CARD"):  # another key: refused, nothing queued or opened
        again = await enroll(client, customer.token, **fields, paymentMethod=method)
        assert again["__typename"] == "InvalidInput", (method, again)
        assert again["field"] == "deviceId" and "already has an enrollment" in again["message"]
    assert await _jobs_and_live(services, wallet, device) == (1, 1)
    async with services.db.session() as session:
        payments = await session.execute(
            select(func.count())
            .select_from(OnrampPayment)
            .where(OnrampPayment.customer_id == wallet.customer_id)
        )
        assert payments.scalar_one() == 0

    # The same key is the same request: its enrollment, not a refusal.
    replay = (await gql(client, ENROLL, variables, token=customer.token))["data"]["enroll"]
    assert replay["__typename"] == "Enrollment" and replay["id"] == first["id"], replay


async def test_concurrent_enrollments_of_one_device_in_one_program_queue_one_job(
    client,
    relayer,
    registry_demo,
    services: Services,
    demo_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Two WALLET enrollments (one signer), then a WALLET and a CARD one (which locks no
    wallet): the device's lock lets exactly one through."""
    program = await program_id(services, "dr-battery-2026")
    for methods in (("WALLET", "WALLET"), ("WALLET", "CARD")):
        customer = await new_customer(client, demo_issuer, deployer, contracts, ovpp=50 * OVPP)
        wallet = await _wallet(services, customer.address)
        device = await add_device(client, customer.token, "Voltstack", "VS-13.5")
        results = await asyncio.gather(
            *(
                enroll(
                    client,
                    customer.token,
                    deviceId=device,
                    programId=program,
                    protocol="OPENADR_3",
                    paymentMethod=method,
                )
                for method in methods
            )
        )
        kinds = sorted(result["__typename"] for result in results)
        assert kinds == ["Enrollment", "InvalidInput"], results
        winner = next(r for r in results if r["__typename"] == "Enrollment")
        jobs, live = await _jobs_and_live(services, wallet, device)
        assert live == 1
        assert jobs == (1 if winner["paymentMethod"] == "WALLET" else 0), (methods, winner)
