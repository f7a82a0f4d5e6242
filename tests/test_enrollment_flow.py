"""Enrolling devices through the OpenVPP registry, seen from the service layer and the chain."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlmodel import select

from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.container import Services
from programs import service
from programs.models import Enrollment, EnrollmentStatus, Program
from registry_client.types import SiteAddress
from tests.support.issuer import TestIssuer
from tests.support.wallets import ChainReader, new_customer

OVPP = 10**18
SITE = SiteAddress(
    line1="1 Market St", city="San Francisco", region="CA", postal_code="94105", country="US"
)


async def account_of(services: Services, subject_token_customer) -> object:  # type: ignore[no-untyped-def]
    from identity.service import provision

    principal = await services.token_validator.validate(subject_token_customer.token)
    return await provision(services.db, principal=principal, keyring=services.keyring)


async def wait_active(
    services: Services, enrollment_id: str, *, timeout: float = 60.0
) -> Enrollment:
    deadline = time.monotonic() + timeout
    while True:
        async with services.db.session() as session:
            row = await session.get(Enrollment, enrollment_id)
            row = await service.refresh_status(session, services=services, enrollment=row)
        if row.status not in (EnrollmentStatus.CONNECTING, EnrollmentStatus.UNENROLLING):
            return row
        assert time.monotonic() < deadline, f"enrollment still {row.status}"
        await asyncio.sleep(0.1)


async def program_named(services: Services, external_id: str) -> Program:
    async with services.db.session() as session:
        return (
            await session.execute(select(Program).where(Program.external_id == external_id))
        ).scalar_one()


async def test_enrolling_the_demo_battery_with_wallet_payment(
    client,
    relayer,
    registry_demo,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    chain = ChainReader(deployer, contracts)
    customer = await new_customer(client, test_issuer, deployer, contracts, ovpp=50 * OVPP)
    account = await account_of(services, customer)
    program = await program_named(services, "dr-battery-2026")
    registry = service.registry_of(services)
    utility = await registry.utility(bytes.fromhex((await _utility_id(services, program))[2:]))
    fee_recipient_before = chain.ovpp_of(utility.fee_recipient)

    async with services.db.session() as session:
        device = await service.add_device(
            session,
            services=services,
            account=account,
            raw=service.DeviceInput(
                make="Voltstack", model="VS-13.5", serial=f"SN-{uuid.uuid4().hex[:8]}", site=SITE
            ),
        )
    async with services.db.session() as session:
        enrollment = await service.enroll(
            session,
            services=services,
            account=account,
            device_row_id=device.id,
            program_row_id=program.id,
            protocol="OPENADR_3",
            payment_method="WALLET",
            idempotency_key="enroll-1",
        )
    assert enrollment.status == EnrollmentStatus.CONNECTING
    final = await wait_active(services, enrollment.id)
    assert final.status == EnrollmentStatus.ACTIVE, final.error
    assert final.connection_parameters["vtnUrl"] == "https://vtn.demo-utility.example/openadr3"
    assert final.connection_parameters["clientId"].startswith("ovpp-")

    connection = await registry.connection(bytes.fromhex(final.connection_id[2:]))
    assert connection.owner == customer.address
    assert connection.status == 1  # ACTIVE
    gas_fee = _gas_fee_of(services, final)
    assert chain.ovpp_of(utility.fee_recipient) == fee_recipient_before + 5 * OVPP
    assert chain.ovpp_of(customer.address) == 50 * OVPP - 5 * OVPP - await gas_fee
    assert chain.native(customer.address) == 0


async def _utility_id(services: Services, program: Program) -> str:
    from programs.models import UtilityAccount

    async with services.db.session() as session:
        row = (
            await session.execute(
                select(UtilityAccount).where(UtilityAccount.tenant_id == program.tenant_id)
            )
        ).scalar_one()
    return row.utility_id


async def _gas_fee_of(services: Services, enrollment: Enrollment) -> int:
    from relayer.models import RelayTransaction

    async with services.db.session() as session:
        job = await session.get(RelayTransaction, enrollment.relay_transaction_id)
    return job.fee_amount
