"""Wire types of devices, programs and enrollments."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from api.relayer_types import RESERVED_KEYS, InsufficientFunds, InvalidInput, SponsorRefused
from chain.tokens import format_units
from identity.models import Tenant
from programs.models import Device as DeviceRow
from programs.models import Enrollment as EnrollmentRow
from programs.models import Program as ProgramRow
from registry_client.types import CapabilityCheck as CheckRecord
from registry_client.types import DeviceModelRecord


@strawberry.enum
class DeviceType(Enum):
    BATTERY = "BATTERY"
    EV_CHARGER = "EV_CHARGER"
    SOLAR_INVERTER = "SOLAR_INVERTER"
    THERMOSTAT = "THERMOSTAT"
    HEAT_PUMP = "HEAT_PUMP"
    EV = "EV"


@strawberry.enum
class Protocol(Enum):
    OPENADR_2_0B = "OPENADR_2_0B"
    OPENADR_3 = "OPENADR_3"
    IEEE_2030_5 = "IEEE_2030_5"
    OCPP_2_0_1 = "OCPP_2_0_1"
    OCPP_1_6J = "OCPP_1_6J"
    MATTER = "MATTER"


@strawberry.enum
class PaymentMethod(Enum):
    WALLET = "WALLET"
    SPONSOR = "SPONSOR"
    CARD = "CARD"


@strawberry.enum
class FeePayer(Enum):
    CUSTOMER = "CUSTOMER"
    SPONSOR = "SPONSOR"
    CARD = "CARD"


@strawberry.enum
class EnrollmentStatus(Enum):
    REQUESTED = "REQUESTED"
    ROUTED = "ROUTED"
    FEE_PENDING = "FEE_PENDING"
    CONNECTING = "CONNECTING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    UNENROLLING = "UNENROLLING"
    UNENROLLED = "UNENROLLED"


@strawberry.input
class SiteAddressInput:
    line1: str
    city: str
    region: str = strawberry.field(description='Subdivision code, e.g. "CA".')
    postal_code: str
    country: str = strawberry.field(description='ISO 3166-1 alpha-2, e.g. "US".')


@strawberry.type
class SiteAddress:
    line1: str
    city: str
    region: str
    postal_code: str
    country: str


@strawberry.input
class AddDeviceInput:
    make: str
    model: str
    serial: str
    site_address: SiteAddressInput


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
class Capabilities:
    max_charge_kw: str
    max_discharge_kw: str
    energy_kwh: str
    nominal_voltage: int


def _kilo(value: int) -> str:
    return format_units(value, 3)


@strawberry.type(description="A device model registered by its vendor in the OpenVPP registry.")
class DeviceModel:
    make: str
    model: str
    device_type: DeviceType
    protocols: list[Protocol]
    capabilities: Capabilities

    @classmethod
    def from_record(cls, record: DeviceModelRecord) -> DeviceModel:
        return cls(
            make=record.make,
            model=record.model,
            device_type=DeviceType(record.device_type.name),
            protocols=[Protocol(p) for p in record.protocols if p in Protocol.__members__],
            capabilities=Capabilities(
                max_charge_kw=_kilo(record.max_charge_w),
                max_discharge_kw=_kilo(record.max_discharge_w),
                energy_kwh=_kilo(record.energy_wh),
                nominal_voltage=record.nominal_voltage_v,
            ),
        )


@strawberry.type(description="A customer's device at a site.")
class Device:
    id: strawberry.ID
    make: str
    model: str
    serial: str
    device_type: DeviceType
    site_address: SiteAddress

    @classmethod
    def from_row(cls, row: DeviceRow) -> Device:
        return cls(
            id=strawberry.ID(row.id),
            make=row.make,
            model=row.model,
            serial=row.serial,
            device_type=DeviceType(row.device_type),
            site_address=SiteAddress(
                line1=row.site_line1,
                city=row.site_city,
                region=row.site_region,
                postal_code=row.site_postal_code,
                country=row.site_country,
            ),
        )


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
    fee_payer: FeePayer
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


@strawberry.type(description="One capability check of the routing, with its reason.")
class CapabilityCheck:
    name: str
    passed: bool
    reason: str

    @classmethod
    def from_record(cls, record: CheckRecord) -> CapabilityCheck:
        return cls(name=record.name, passed=record.passed, reason=record.reason)


@strawberry.type(description="Whether a device can join a program, what it costs and who pays.")
class EnrollmentCheck:
    ready: bool
    fee: str
    fee_payer: FeePayer
    gas_sponsored: bool
    gas_fee: str = strawberry.field(description="OVPP for gas when not sponsored, decimal string.")
    checks: list[CapabilityCheck]
    failing_checks: list[CapabilityCheck]


@strawberry.type(description="A device's enrollment in a program.")
class Enrollment:
    id: strawberry.ID
    status: EnrollmentStatus
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

    @classmethod
    def from_rows(
        cls,
        row: EnrollmentRow,
        *,
        device: DeviceRow,
        program: ProgramRow,
        tenant: Tenant,
        payment_client_secret: str | None = None,
    ) -> Enrollment:
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


@strawberry.type(description="The device cannot join: every failing check is listed.")
class NotEligible:
    message: str
    failing_checks: list[CapabilityCheck]


EnrollResult = Annotated[
    Enrollment | NotEligible | InsufficientFunds | SponsorRefused | InvalidInput,
    strawberry.union("EnrollResult"),
]
UnenrollResult = Annotated[
    Enrollment | InsufficientFunds | SponsorRefused | InvalidInput,
    strawberry.union("UnenrollResult"),
]
AddDeviceResult = Annotated[Device | InvalidInput, strawberry.union("AddDeviceResult")]
