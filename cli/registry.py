"""``registry``: the OpenVPP registry's device models and its registrar."""

from __future__ import annotations

import asyncio

import click

from cli.common import cli_settings


@click.group()
def registry() -> None:
    """The OpenVPP registry: vendors' device models, the registrar wallet."""


@registry.command("grant-registrar")
def registry_grant_registrar() -> None:
    """Let the registrar wallet (a system wallet of this backend) register utilities: grants it
    the registry's REGISTRAR_ROLE, signed by the registry's admin (OVPP_DEPLOYER_PRIVATE_KEY).
    Once per deployment; administrators' registerUtility is refused until then. The API never
    holds the operator's key: this command is where it is used."""
    from api.container import Services
    from chain.profiles import deployer_key
    from programs.operator import grant_registrar
    from programs.registry_changes import registrar_wallet

    settings = cli_settings()

    async def run() -> tuple[str, bool]:
        services = await Services.start(settings, writes_trust=False)
        try:
            registrar = (await registrar_wallet(services)).address
            key = deployer_key(settings, services.chain.profile)
            return registrar, await grant_registrar(services, registrar=registrar, operator_key=key)
        finally:
            await services.close()

    address, granted = asyncio.run(run())
    state = "granted REGISTRAR_ROLE now" if granted else "already holds REGISTRAR_ROLE"
    click.echo(f"registrar wallet {address}: {state}")


@registry.command("add-model")
@click.option("--make", required=True)
@click.option("--model", required=True)
@click.option(
    "--type",
    "device_type",
    required=True,
    type=click.Choice(["BATTERY", "EV_CHARGER", "SOLAR_INVERTER", "THERMOSTAT", "HEAT_PUMP", "EV"]),
)
@click.option("--max-charge-kw", default="0", show_default=True)
@click.option("--max-discharge-kw", default="0", show_default=True)
@click.option("--energy-kwh", default="0", show_default=True)
@click.option("--nominal-voltage", type=int, default=240, show_default=True)
@click.option(
    "--protocol",
    "protocols",
    multiple=True,
    required=True,
    type=click.Choice(
        ["OPENADR_2_0B", "OPENADR_3", "IEEE_2030_5", "OCPP_2_0_1", "OCPP_1_6J", "MATTER"]
    ),
    help="Repeat for each protocol the device's server speaks.",
)
@click.option("--endpoint", required=True, help="The vendor's device connectivity server.")
@click.option("--cert-fingerprint", default="0x" + "00" * 32, help="SHA-256 of the vendor cert.")
def registry_add_model(
    make: str,
    model: str,
    device_type: str,
    max_charge_kw: str,
    max_discharge_kw: str,
    energy_kwh: str,
    nominal_voltage: int,
    protocols: tuple[str, ...],
    endpoint: str,
    cert_fingerprint: str,
) -> None:
    """Register or update a device model, signed by the vendor's key (OVPP_VENDOR_PRIVATE_KEY;
    the vendor must have been onboarded by the registrar)."""
    from api.container import Services
    from chain.profiles import deployer_key, vendor_key
    from chain.tokens import parse_units
    from programs.operator import (
        DeviceModelSpec,
        address_of,
        register_device_model,
        register_vendor,
    )
    from registry_client.types import DeviceType

    settings = cli_settings()
    fingerprint = bytes.fromhex(cert_fingerprint.removeprefix("0x"))
    if len(fingerprint) != 32:
        raise click.ClickException("--cert-fingerprint is 32 bytes of hex")
    spec = DeviceModelSpec(
        make=make,
        model=model,
        device_type=DeviceType[device_type],
        max_charge_w=parse_units(max_charge_kw, 3),
        max_discharge_w=parse_units(max_discharge_kw, 3),
        energy_wh=parse_units(energy_kwh, 3),
        nominal_voltage_v=nominal_voltage,
        protocols=list(protocols),
        vendor_endpoint=endpoint,
        vendor_cert_fingerprint=fingerprint,
    )

    async def run() -> bytes:
        services = await Services.start(settings, writes_trust=False)
        try:
            key = vendor_key(settings, services.chain.profile)
            if services.chain.profile.is_local:  # the local registrar onboards the demo vendor
                await register_vendor(
                    services,
                    vendor=address_of(key),
                    operator_key=deployer_key(settings, services.chain.profile),
                )
            return await register_device_model(services, spec=spec, vendor_key=key)
        finally:
            await services.close()

    model_id = asyncio.run(run())
    click.echo(f"{make} {model} registered as 0x{model_id.hex()}")
