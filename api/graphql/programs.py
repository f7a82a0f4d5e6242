"""Utility programs and enrollment: a thin skin over programs/."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.scalars import JSON

from api.context import RequestContext
from api.graphql.common import RESERVED_KEYS, wire_enum
from api.graphql.customer_events import (
    DeviceState,
    EnrollmentEvent,
    EnrollmentPreferences,
    device_state,
)
from api.graphql.devices import Device, DeviceType, Protocol, SiteAddressInput
from api.graphql.failures import (
    CapabilityCheck,
    InsufficientFunds,
    InvalidInput,
    NotEligible,
    SponsorRefused,
    typed_failures,
)
from chain.tokens import format_units
from identity.models import Tenant
from identity.principal import Scope
from programs import card, catalog, enrollment, models
from programs.models import Device as DeviceRow
from programs.models import Enrollment as EnrollmentRow
from programs.models import Program as ProgramRow

Info = strawberry.Info[RequestContext, None]

FeePayer = wire_enum(models.FeePayer, name="FeePayer")
EnrollmentStatus = wire_enum(models.EnrollmentStatus, name="EnrollmentStatus")


@strawberry.enum
class PaymentMethod(Enum):
    WALLET = "WALLET"
    SPONSOR = "SPONSOR"
    CARD = "CARD"


@strawberry.input
class CheckEnrollmentInput:
    device_id: strawberry.ID
    program_id: strawberry.ID
    protocol: Protocol
    payment_method: PaymentMethod | None = None


@strawberry.input
class EnrollInput:
    device_id: strawberry.ID
    program_id: strawberry.ID
    protocol: Protocol
    payment_method: PaymentMethod
    idempotency_key: str = strawberry.field(description="Client-chosen. " + RESERVED_KEYS)


@strawberry.input
class UnenrollInput:
    enrollment_id: strawberry.ID
    idempotency_key: str = strawberry.field(description="Client-chosen. " + RESERVED_KEYS)


@strawberry.type
class Incentives:
    enrollment_bonus: str = strawberry.field(description="OVPP, decimal string.")
    per_event_reward: str = strawberry.field(description="OVPP per event, decimal string.")


@strawberry.type(description="A utility program open at a site.")
class Program:
    id: strawberry.ID
    name: str
    utility: str
    description: str
    fee_amount: str = strawberry.field(description="The OVPP connection fee, decimal string.")
    fee_payer: FeePayer  # type: ignore[valid-type]
    sponsored: bool
    protocols: list[Protocol]
    eligible_device_types: list[DeviceType]
    incentives: Incentives
    active: bool

    @classmethod
    def from_row(cls, row: ProgramRow, tenant: Tenant) -> Program:
        return cls(
            id=strawberry.ID(row.id),
            name=row.name,
            utility=tenant.name,
            description=row.description,
            fee_amount=format_units(row.connection_fee, 18),
            fee_payer=FeePayer(row.fee_payer),
            sponsored=row.fee_payer == "SPONSOR",
            protocols=[Protocol(p) for p in row.protocols],
            eligible_device_types=[DeviceType(t) for t in row.eligible_device_types],
            incentives=Incentives(
                enrollment_bonus=format_units(row.enrollment_bonus, 18),
                per_event_reward=format_units(row.per_event_reward, 18),
            ),
            active=row.active,
        )


@strawberry.type(description="Whether a device can join a program, what it costs and who pays.")
class EnrollmentCheck:
    ready: bool
    fee: str
    fee_payer: FeePayer  # type: ignore[valid-type]
    gas_sponsored: bool
    gas_fee: str = strawberry.field(description="OVPP for gas when not sponsored, decimal string.")
    checks: list[CapabilityCheck]
    failing_checks: list[CapabilityCheck]


@strawberry.type(description="A device's enrollment in a program.")
class Enrollment:
    id: strawberry.ID
    status: EnrollmentStatus  # type: ignore[valid-type]
    protocol: Protocol
    payment_method: PaymentMethod
    fee: str
    connection_id: str | None
    connection_parameters: JSON | None = strawberry.field(
        description="What the device's server needs to reach the utility (once ACTIVE)."
    )
    error: str | None
    created_at: datetime
    device: Device
    program: Program
    payment_client_secret: str | None = strawberry.field(
        default=None,
        description="paymentMethod CARD: the Stripe client secret for the app's payment sheet, "
        "in enroll's answer while the fee awaits payment (FEE_PENDING); null otherwise.",
    )

    @strawberry.field(description="The customer's limits for the device during events.")
    async def preferences(self, info: Info) -> EnrollmentPreferences:
        limits = await info.context.loaders.enrollment_limits.load(str(self.id))
        return EnrollmentPreferences.from_limits(limits)

    @strawberry.field(
        description="The device's demand-response events (ended in the last 7 days, or not "
        "ended), by start."
    )
    async def events(self, info: Info) -> list[EnrollmentEvent]:
        views = await info.context.loaders.enrollment_events.load(str(self.id))
        return [EnrollmentEvent.from_view(view) for view in views]

    @strawberry.field(description="The device's newest telemetry (the last day's); null: none.")
    async def device_state(self, info: Info) -> DeviceState | None:
        return await device_state(info, str(self.id))

    @classmethod
    def from_rows(
        cls,
        row: EnrollmentRow,
        *,
        device: DeviceRow | None,
        program: ProgramRow | None,
        tenant: Tenant | None,
        payment_client_secret: str | None = None,
    ) -> Enrollment:
        assert device is not None and program is not None and tenant is not None
        return cls(
            id=strawberry.ID(row.id),
            status=EnrollmentStatus(row.status),
            protocol=Protocol(row.protocol),
            payment_method=PaymentMethod(row.payment_method),
            fee=format_units(row.fee_amount, 18),
            connection_id=row.connection_id,
            connection_parameters=row.connection_parameters if row.status == "ACTIVE" else None,
            error=row.error,
            created_at=row.created_at,
            device=Device.from_row(device),
            program=Program.from_row(program, tenant),
            payment_client_secret=payment_client_secret,
        )


EnrollResult = Annotated[
    Enrollment | NotEligible | InsufficientFunds | SponsorRefused | InvalidInput,
    strawberry.union("EnrollResult"),
]
UnenrollResult = Annotated[
    Enrollment | InsufficientFunds | SponsorRefused | InvalidInput,
    strawberry.union("UnenrollResult"),
]


async def programs(
    info: Info, site_address: SiteAddressInput, device_type: DeviceType | None = None
) -> list[Program]:
    async with info.context.read_session() as session:
        rows = await catalog.programs_at(
            session,
            site=site_address.to_site(),
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


@typed_failures(EnrollResult)
async def enroll(info: Info, input: EnrollInput) -> EnrollResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    payment_client_secret = None
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
    return await _enrollment_in(session, row, payment_client_secret=payment_client_secret)


@typed_failures(UnenrollResult)
async def unenroll(info: Info, input: UnenrollInput) -> UnenrollResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    session = await context.session()
    row = await enrollment.unenroll(
        session,
        services=context.services,
        account=account,
        enrollment_id=str(input.enrollment_id),
        idempotency_key=input.idempotency_key,
    )
    return await _enrollment_in(session, row)


async def _enrollment_in(
    session: AsyncSession, row: EnrollmentRow, *, payment_client_secret: str | None = None
) -> Enrollment:
    """A mutation's enrollment, read in the mutation's own session (its device may have been
    added by an earlier mutation of the same operation, not committed yet)."""
    device = await session.get(DeviceRow, row.device_row_id)
    program = await session.get(ProgramRow, row.program_row_id)
    tenant = await session.get(Tenant, program.tenant_id) if program is not None else None
    return Enrollment.from_rows(
        row,
        device=device,
        program=program,
        tenant=tenant,
        payment_client_secret=payment_client_secret,
    )


async def viewer_enrollments(info: Info, customer_id: str) -> list[Enrollment]:
    """The customer's enrollments; their devices, programs and utilities come through the
    request's DataLoaders, one query each whatever the number of enrollments."""
    context = info.context
    async with context.read_session() as session:
        rows = await enrollment.enrollments_of(
            session, services=context.services, customer_id=customer_id
        )
    loaders = context.loaders
    devices = await loaders.devices.load_many([row.device_row_id for row in rows])
    program_rows = await loaders.programs.load_many([row.program_row_id for row in rows])
    tenants = await loaders.tenants.load_many(
        [program.tenant_id if program is not None else "" for program in program_rows]
    )
    return [
        Enrollment.from_rows(row, device=device, program=program, tenant=tenant)
        for row, device, program, tenant in zip(rows, devices, program_rows, tenants, strict=True)
    ]
