"""Device models from the registry and the customer's devices: a thin skin over programs/ and
registry_client/."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql.failures import InvalidInput, typed_failures
from api.graphql.rewards import DeviceReputation, device_reputation
from chain.tokens import format_units
from identity.principal import Scope
from programs import devices
from programs.models import Device as DeviceRow
from programs.registry import registry_of
from registry_client.types import DeviceModelRecord, SiteAddress

Info = strawberry.Info[RequestContext, None]


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


@strawberry.input
class SiteAddressInput:
    line1: str
    city: str
    region: str = strawberry.field(description='Subdivision code, e.g. "CA".')
    postal_code: str
    country: str = strawberry.field(description='ISO 3166-1 alpha-2, e.g. "US".')

    def to_site(self) -> SiteAddress:
        return SiteAddress(
            line1=self.line1,
            city=self.city,
            region=self.region,
            postal_code=self.postal_code,
            country=self.country,
        )


@strawberry.type(name="SiteAddress")
class SiteAddressType:
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
    site_address: SiteAddressType
    device_id: strawberry.Private[str]

    @strawberry.field(description="The device's reputation on chain, from its settled events.")
    async def reputation(self, info: Info) -> DeviceReputation:
        return await device_reputation(info, self.device_id)

    @classmethod
    def from_row(cls, row: DeviceRow) -> Device:
        return cls(
            id=strawberry.ID(row.id),
            device_id=row.device_id,
            make=row.make,
            model=row.model,
            serial=row.serial,
            device_type=DeviceType(row.device_type),
            site_address=SiteAddressType(
                line1=row.site_line1,
                city=row.site_city,
                region=row.site_region,
                postal_code=row.site_postal_code,
                country=row.site_country,
            ),
        )


AddDeviceResult = Annotated[Device | InvalidInput, strawberry.union("AddDeviceResult")]


async def device_models(info: Info, device_type: DeviceType | None = None) -> list[DeviceModel]:
    records = await registry_of(info.context.services.chain).device_models()
    return [
        DeviceModel.from_record(r)
        for r in records
        if device_type is None or r.device_type.name == device_type.value
    ]


@typed_failures(AddDeviceResult)
async def add_device(info: Info, input: AddDeviceInput) -> AddDeviceResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    row = await devices.add_device(
        await context.session(),
        services=context.services,
        account=account,
        raw=devices.DeviceInput(
            make=input.make,
            model=input.model,
            serial=input.serial,
            site=input.site_address.to_site(),
        ),
    )
    return Device.from_row(row)


async def viewer_devices(info: Info, customer_id: str) -> list[Device]:
    async with info.context.read_session() as session:
        rows = await devices.devices_of(session, customer_id)
    return [Device.from_row(row) for row in rows]
