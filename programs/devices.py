"""The customers' devices: registered once per make, model and serial, at a site address."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from identity.service import CustomerAccount
from programs import repository
from programs.deps import ProgramServices
from programs.models import Device
from programs.registry import registry_of
from registry_client.routing import device_id_of, model_id_of
from registry_client.types import SiteAddress


@dataclass(frozen=True)
class DeviceInput:
    make: str
    model: str
    serial: str
    site: SiteAddress


def _validate(raw: DeviceInput) -> None:
    for name, value, limit in (
        ("make", raw.make, 100),
        ("model", raw.model, 100),
        ("serial", raw.serial, 100),
    ):
        if not value.strip() or len(value) > limit:
            raise InvalidInput(f"{name} must be 1 to {limit} characters", field=name)
    site = raw.site
    if len(site.country) != 2 or not site.country.isalpha():
        raise InvalidInput(
            "country is an ISO 3166-1 alpha-2 code such as US", field="siteAddress.country"
        )
    if not site.postal_code.strip() or not site.line1.strip() or not site.city.strip():
        raise InvalidInput(
            "the site address needs line1, city and postal code", field="siteAddress"
        )


async def add_device(
    session: AsyncSession, *, services: ProgramServices, account: CustomerAccount, raw: DeviceInput
) -> Device:
    """Register the customer's device (idempotent on make+model+serial)."""
    _validate(raw)
    model = await registry_of(services.chain).device_model(model_id_of(raw.make, raw.model))
    if model is None:
        raise InvalidInput(
            f"{raw.make} {raw.model} is not a registered device model; pick one from deviceModels",
            field="model",
        )
    device_id = "0x" + device_id_of(raw.make, raw.model, raw.serial).hex()
    existing = await repository.device_of_customer_by_device_id(
        session, customer_id=account.customer.id, device_id=device_id
    )
    if existing is not None:
        return existing
    site = raw.site
    device = Device(
        customer_id=account.customer.id,
        device_id=device_id,
        model_id="0x" + model.model_id.hex(),
        make=raw.make,
        model=raw.model,
        serial=raw.serial,
        device_type=model.device_type.name,
        site_line1=site.line1,
        site_city=site.city,
        site_region=site.region.upper(),
        site_postal_code=site.postal_code.strip(),
        site_country=site.country.upper(),
    )
    session.add(device)
    await session.flush()
    return device


def site_of(device: Device) -> SiteAddress:
    return SiteAddress(
        line1=device.site_line1,
        city=device.site_city,
        region=device.site_region,
        postal_code=device.site_postal_code,
        country=device.site_country,
    )


async def devices_of(session: AsyncSession, customer_id: str) -> list[Device]:
    return await repository.devices_of_customer(session, customer_id)


async def device_of_customer(
    session: AsyncSession, *, customer_id: str, device_row_id: str
) -> Device:
    device = await session.get(Device, device_row_id)
    if device is None or device.customer_id != customer_id:
        raise InvalidInput("no such device: add it first", field="deviceId")
    return device
