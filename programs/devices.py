"""The customers' devices: registered once per make, model and serial, at a site address."""

from __future__ import annotations

import re
import unicodedata
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


# The columns' lengths (programs.models.Device); a postal code is ASCII letters, digits, spaces
# and hyphens ("94105", "SW1A 1AA", "10115", "94105-1234"); a region is a subdivision code,
# with or without its country ("CA", "US-CA").
_POSTAL_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,19}")
_REGION = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,9}")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_JOINERS = frozenset("\u200c\u200d")
"""Zero-width (non-)joiners: format characters that some scripts' addresses need."""


def _has_control_character(text: str) -> bool:
    """Control, format (bidi overrides among them), private-use, unassigned and surrogate
    characters, and line or paragraph separators."""
    return any(
        (unicodedata.category(character)[0] == "C" and character not in _JOINERS)
        or unicodedata.category(character) in ("Zl", "Zp")
        for character in text
    )


def _validate(raw: DeviceInput) -> None:
    for name, value, limit in (
        ("make", raw.make, 100),
        ("model", raw.model, 100),
        ("serial", raw.serial, 100),
    ):
        if not value.strip() or len(value) > limit or _has_control_character(value):
            raise InvalidInput(
                f"{name} must be 1 to {limit} characters, with no control characters", field=name
            )
    _validate_site(raw.site)


def _validate_site(site: SiteAddress) -> None:
    """Every field of a site address, each refused with its own ``siteAddress.<field>``: text
    fields within their column, free of control characters; the codes in ASCII."""
    for name, value, limit in (("line1", site.line1, 200), ("city", site.city, 100)):
        if not value.strip() or len(value) > limit:
            raise InvalidInput(
                f"{name} must be 1 to {limit} characters", field=f"siteAddress.{name}"
            )
        if _has_control_character(value):
            raise InvalidInput(
                f"{name} holds a control or unassigned character", field=f"siteAddress.{name}"
            )
    if not _POSTAL_CODE.fullmatch(site.postal_code.strip()):
        raise InvalidInput(
            "postalCode is 1 to 20 ASCII letters, digits, spaces or hyphens, e.g. 94105",
            field="siteAddress.postalCode",
        )
    if not _REGION.fullmatch(site.region):
        raise InvalidInput(
            "region is a subdivision code of 1 to 10 ASCII letters or digits, e.g. CA",
            field="siteAddress.region",
        )
    if not _COUNTRY.fullmatch(site.country):
        raise InvalidInput(
            "country is an ISO 3166-1 alpha-2 code such as US", field="siteAddress.country"
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
