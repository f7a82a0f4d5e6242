"""Demo data of the embedded default: four device models from a demo vendor, and the demo
utility (US, California, postal codes 94102–94110) with a customer-paid demand-response
program and a utility-sponsored battery program, both offering OpenADR 2.0b from the embedded
program server (its control endpoint). Idempotent: a restart changes nothing, except to bring
the demo utility's endpoints and programs up to these (an older chain's)."""

from __future__ import annotations

from dataclasses import replace

from chain.profiles import deployer_key, vendor_key
from core.settings import Settings
from identity.service import DEV_TENANT_SLUG
from programs.admin import tenant_by_slug, utility_wallet
from programs.deps import ProgramServices
from programs.models import FeePayer
from programs.operator import (
    DeviceModelSpec,
    address_of,
    grant_registrar,
    onboard_utility,
    publish_program,
    register_device_model,
    register_vendor,
)
from programs.publishing import ProgramSpec, UtilitySpec
from programs.registry import registry_of
from programs.registry_changes import registrar_wallet
from registry_client.onchain import program_id_of, utility_id_of
from registry_client.routing import model_id_of
from registry_client.types import DeviceType
from relayer.sponsorship import configure_sponsor, sponsor_of_tenant

OVPP = 10**18

DEMO_MODELS = [
    DeviceModelSpec("Voltstack", "VS-13.5", DeviceType.BATTERY, 5_000, 5_000, 13_500, 240,
                    ["IEEE_2030_5", "OPENADR_2_0B", "OPENADR_3"], "https://cloud.voltstack.example/der"),
    DeviceModelSpec("ChargeWell", "CW-48", DeviceType.EV_CHARGER, 11_500, 0, 0, 240,
                    ["OCPP_2_0_1", "OCPP_1_6J"], "wss://cloud.chargewell.example/ocpp"),
    DeviceModelSpec("ThermaSense", "TS-3", DeviceType.THERMOSTAT, 0, 0, 0, 24,
                    ["OPENADR_2_0B", "MATTER"], "https://api.thermasense.example/oadr"),
    DeviceModelSpec("SunBridge", "SB-7600", DeviceType.SOLAR_INVERTER, 0, 7_600, 0, 240,
                    ["IEEE_2030_5"], "https://der.sunbridge.example/2030-5"),
]  # fmt: skip

DEMO_UTILITY = UtilitySpec(
    country="US",
    region="US-CA",
    postal_codes=["94102-94110"],
    control_endpoints={
        "OPENADR_2_0B": "https://vtn.demo-utility.example/oadr2",  # demo_utility(): ours
        "OPENADR_3": "https://vtn.demo-utility.example/openadr3",
        "IEEE_2030_5": "https://gateway.demo-utility.example/2030-5/dcap",
        "OCPP_2_0_1": "wss://csms.demo-utility.example/ocpp",
    },
    ca_cert_fingerprint=bytes.fromhex("5a" * 32),
    # Where the demo utility's connection fees go (an address nobody holds a key for locally).
    fee_recipient="0x000000000000000000000000000000000000Fee5",
)

DEMO_PROGRAMS = [
    ProgramSpec(
        external_id="dr-battery-2026",
        name="Bay Area Battery Demand Response",
        long_name="Bay Area Battery Demand Response 2026",
        description="Let the utility draw on your battery during peak events (up to 20 a year). "
        "You pay the one-time connection fee from your wallet.",
        fee_payer=FeePayer.CUSTOMER,
        connection_fee=5 * OVPP,
        protocols=["OPENADR_2_0B", "OPENADR_3", "IEEE_2030_5"],
        eligible_device_types=[DeviceType.BATTERY, DeviceType.SOLAR_INVERTER],
        min_discharge_w=3_000,
        min_energy_wh=5_000,
        enrollment_bonus=50 * OVPP,
        per_event_reward=2 * OVPP,
    ),
    ProgramSpec(
        external_id="sponsored-battery-2026",
        name="Sponsored Home Battery Program",
        long_name="Home Battery Grid Support (utility-sponsored)",
        description="The utility pays your connection fee and gas. Earn rewards for each event.",
        fee_payer=FeePayer.SPONSOR,
        connection_fee=5 * OVPP,
        protocols=["OPENADR_2_0B", "OPENADR_3", "IEEE_2030_5"],
        eligible_device_types=[DeviceType.BATTERY],
        min_energy_wh=10_000,
        enrollment_bonus=25 * OVPP,
        per_event_reward=3 * OVPP,
    ),
]


def demo_utility(settings: Settings) -> UtilitySpec:
    """The demo utility, its OpenADR 2.0b control endpoint the embedded program server."""
    endpoint = settings.resolved_program_server_url
    if endpoint is None:
        return DEMO_UTILITY
    return replace(
        DEMO_UTILITY, control_endpoints=DEMO_UTILITY.control_endpoints | {"OPENADR_2_0B": endpoint}
    )


async def seed_registry_demo(services: ProgramServices, *, progress=print) -> None:  # type: ignore[no-untyped-def]
    settings, profile = services.settings, services.chain.profile
    operator = deployer_key(settings, profile)
    vendor = vendor_key(settings, profile)
    registry = registry_of(services.chain)
    await register_vendor(services, vendor=address_of(vendor), operator_key=operator)
    registrar = await registrar_wallet(services)
    await grant_registrar(services, registrar=registrar.address, operator_key=operator)
    for spec in DEMO_MODELS:
        if await registry.device_model(model_id_of(spec.make, spec.model)) is None:
            await register_device_model(services, spec=spec, vendor_key=vendor)
            progress(f"registered device model {spec.make} {spec.model}")
    tenant = await tenant_by_slug(services, DEV_TENANT_SLUG)
    if tenant is None:
        return
    utility_id = utility_id_of(tenant.slug)
    utility_spec = demo_utility(settings)
    record = await registry.utility(utility_id)
    if record is None or record.control_endpoints != utility_spec.control_endpoints:
        await onboard_utility(services, tenant=tenant, spec=utility_spec, operator_key=operator)
        progress(f"onboarded {tenant.name} in the registry")
    wallet = await utility_wallet(services, tenant)
    for spec in DEMO_PROGRAMS:
        published = await registry.program(program_id_of(utility_id, spec.external_id))
        if published is None or set(published.protocols) != set(spec.protocols):
            await publish_program(services, tenant=tenant, spec=spec, operator_key=operator)
            progress(f"published program {spec.name}")
    async with services.db.session() as session:
        if await sponsor_of_tenant(session, tenant.id) is None:
            await configure_sponsor(
                session, tenant_id=tenant.id, name=f"{tenant.name}", add_funds_wei=10 * 10**18
            )
            sponsor = await sponsor_of_tenant(session, tenant.id)
            assert sponsor is not None
            sponsor.sponsors_transfers = False  # it sponsors its programs, not every transfer
            session.add(sponsor)
    progress(f"utility wallet {wallet.address}")
