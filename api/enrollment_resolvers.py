"""Devices, programs and enrollment: a thin skin over programs/ and registry_client/."""

from __future__ import annotations

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from api.context import RequestContext
from api.enrollment_types import (
    AddDeviceInput,
    AddDeviceResult,
    CapabilityCheck,
    CheckEnrollmentInput,
    Device,
    DeviceModel,
    DeviceType,
    EnrollInput,
    Enrollment,
    EnrollmentCheck,
    EnrollResult,
    FeePayer,
    NotEligible,
    Program,
    SiteAddressInput,
    UnenrollInput,
    UnenrollResult,
)
from api.relayer_types import failure_from_error
from chain.tokens import format_units
from core.errors import DomainError
from core.errors import InvalidInput as InvalidInputError
from identity.models import Tenant
from identity.principal import Scope
from programs import card, catalog, devices, enrollment
from programs import errors as program_errors
from programs.models import Device as DeviceRow
from programs.models import Enrollment as EnrollmentRow
from programs.models import Program as ProgramRow
from programs.registry import registry_of
from registry_client.types import SiteAddress

Info = strawberry.Info[RequestContext, None]


def _site(value: SiteAddressInput) -> SiteAddress:
    return SiteAddress(
        line1=value.line1,
        city=value.city,
        region=value.region,
        postal_code=value.postal_code,
        country=value.country,
    )


async def device_models(info: Info, device_type: DeviceType | None = None) -> list[DeviceModel]:
    records = await registry_of(info.context.services).device_models()
    return [
        DeviceModel.from_record(r)
        for r in records
        if device_type is None or r.device_type.name == device_type.value
    ]


async def programs(
    info: Info, site_address: SiteAddressInput, device_type: DeviceType | None = None
) -> list[Program]:
    async with info.context.read_session() as session:
        rows = await catalog.programs_at(
            session,
            site=_site(site_address),
            device_type=device_type.value if device_type else None,
        )
    return [Program.from_row(program, tenant) for program, tenant, _utility in rows]


async def check_enrollment(info: Info, input: CheckEnrollmentInput) -> EnrollmentCheck:
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    async with context.read_session() as session:
        check = await enrollment.check_enrollment(
            session,
            services=context.services,
            account=account,
            device_row_id=str(input.device_id),
            program_row_id=str(input.program_id),
            protocol=input.protocol.value,
            payment_method=input.payment_method.value if input.payment_method else None,
        )
    return EnrollmentCheck(
        ready=check.routing.ready,
        fee=format_units(check.fee, 18),
        fee_payer=FeePayer(check.payer),
        gas_sponsored=check.gas_sponsored,
        gas_fee=format_units(check.gas_fee, 18),
        checks=[CapabilityCheck.from_record(c) for c in check.routing.checks],
        failing_checks=[CapabilityCheck.from_record(c) for c in check.routing.failing],
    )


async def add_device(info: Info, input: AddDeviceInput) -> AddDeviceResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    try:
        row = await devices.add_device(
            await context.session(),
            services=context.services,
            account=account,
            raw=devices.DeviceInput(
                make=input.make,
                model=input.model,
                serial=input.serial,
                site=_site(input.site_address),
            ),
        )
    except DomainError as error:
        await context.rollback()
        return failure_from_error(error, tokens=context.services.chain.tokens)  # type: ignore[return-value]
    return Device.from_row(row)


async def enroll(info: Info, input: EnrollInput) -> EnrollResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    payment_client_secret = None
    try:
        if input.payment_method.value == "CARD":
            paid_by_card = await card.enroll_by_card(
                session,
                services=context.services,
                account=account,
                device_row_id=str(input.device_id),
                program_row_id=str(input.program_id),
                protocol=input.protocol.value,
                idempotency_key=input.idempotency_key,
            )
            row, payment_client_secret = paid_by_card.enrollment, paid_by_card.client_secret
        else:
            row = await enrollment.enroll(
                session,
                services=context.services,
                account=account,
                device_row_id=str(input.device_id),
                program_row_id=str(input.program_id),
                protocol=input.protocol.value,
                payment_method=input.payment_method.value,
                idempotency_key=input.idempotency_key,
            )
    except program_errors.NotEligible as error:
        await context.rollback()
        return NotEligible(
            message=error.message,
            failing_checks=[CapabilityCheck.from_record(c) for c in error.failing],
        )
    except program_errors.CardPaymentUnavailable as error:
        await context.rollback()
        return failure_from_error(  # type: ignore[return-value]
            InvalidInputError(error.message, field="paymentMethod"),
            tokens=context.services.chain.tokens,
        )
    except DomainError as error:
        await context.rollback()
        return failure_from_error(error, tokens=context.services.chain.tokens)  # type: ignore[return-value]
    return await enrollment_wire(session, row, payment_client_secret=payment_client_secret)


async def unenroll(info: Info, input: UnenrollInput) -> UnenrollResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    try:
        row = await enrollment.unenroll(
            session,
            services=context.services,
            account=account,
            enrollment_id=str(input.enrollment_id),
            idempotency_key=input.idempotency_key,
        )
    except DomainError as error:
        await context.rollback()
        return failure_from_error(error, tokens=context.services.chain.tokens)  # type: ignore[return-value]
    return await enrollment_wire(session, row)


async def enrollment_wire(
    session: AsyncSession, row: EnrollmentRow, *, payment_client_secret: str | None = None
) -> Enrollment:
    device = await session.get(DeviceRow, row.device_row_id)
    program = await session.get(ProgramRow, row.program_row_id)
    assert device is not None and program is not None
    tenant = await session.get(Tenant, program.tenant_id)
    assert tenant is not None
    return Enrollment.from_rows(
        row,
        device=device,
        program=program,
        tenant=tenant,
        payment_client_secret=payment_client_secret,
    )


async def viewer_devices(info: Info, customer_id: str) -> list[Device]:
    async with info.context.read_session() as session:
        rows = await devices.devices_of(session, customer_id)
    return [Device.from_row(row) for row in rows]


async def viewer_enrollments(info: Info, customer_id: str) -> list[Enrollment]:
    async with info.context.read_session() as session:
        rows = await enrollment.enrollments_of(
            session, services=info.context.services, customer_id=customer_id
        )
        return [await enrollment_wire(session, row) for row in rows]
