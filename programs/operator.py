"""The operator's own registry writes, sent directly from keys it holds: registering vendors
(and vendors their device models), granting the registrar role to the registrar wallet, and
onboarding a utility or publishing a program in one step with a wait for the receipt. Only the
operator's commands (``cli``) and the development seed use this; API processes never import it
(``.importlinter``): an administrator's changes go through the relayer
(``programs.registry_changes``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account import Account

from core.errors import Forbidden, InvalidInput
from identity.models import Tenant
from programs import repository
from programs.admin import utility_wallet
from programs.deps import ProgramServices
from programs.models import Program, UtilityAccount
from programs.publishing import (
    ProgramSpec,
    UtilitySpec,
    checked_program_spec,
    checked_utility_spec,
    mirror_utility,
    program_call,
    program_row,
    registration_call,
    utility_calls,
    write_program,
)
from programs.registry import registry_of
from registry_client.onchain import utility_id_of
from registry_client.routing import model_id_of
from registry_client.types import DeviceType, protocol_id
from relayer.direct import send_from_operator, submit_as_wallet


@dataclass(frozen=True)
class DeviceModelSpec:
    make: str
    model: str
    device_type: DeviceType
    max_charge_w: int
    max_discharge_w: int
    energy_wh: int
    nominal_voltage_v: int
    protocols: list[str] = field(default_factory=list)
    vendor_endpoint: str = ""
    vendor_cert_fingerprint: bytes = b"\x00" * 32


async def grant_registrar(services: ProgramServices, *, registrar: str, operator_key: str) -> bool:
    """Give ``registrar`` (the registrar wallet) ``REGISTRAR_ROLE``, signed by the registry's
    admin. Returns whether it was granted now (``False``: it held the role already)."""
    registry = registry_of(services.chain)
    if await registry.is_registrar(registrar):
        return False
    role = await registry.contract.functions.REGISTRAR_ROLE().call()
    data = registry.contract.encode_abi("grantRole", args=[role, registrar])
    await send_from_operator(
        services,
        operator_key=operator_key,
        to=registry.address,
        data=bytes.fromhex(data[2:]),
        gas=120_000,
    )
    return True


async def onboard_utility(
    services: ProgramServices, *, tenant: Tenant, spec: UtilitySpec, operator_key: str
) -> UtilityAccount:
    """Register the utility in the registry, or bring its record there up to ``spec``, sent
    now from the operator's key (the utility's own calls as its wallet's forward requests),
    and mirror what landed. Nothing is sent when the chain already matches."""
    spec = checked_utility_spec(spec)
    registry = registry_of(services.chain)
    wallet = await utility_wallet(services, tenant)
    utility_id = utility_id_of(tenant.slug)
    record = await registry.utility(utility_id)
    if record is None:
        call = registration_call(registry, tenant=tenant, spec=spec, admin=wallet.address)
        await send_from_operator(
            services, operator_key=operator_key, to=call.target, data=call.data, gas=call.gas
        )
        record = await registry.utility(utility_id)
        assert record is not None
    if record.admin != wallet.address:
        raise Forbidden("the registry's admin of this utility is not its wallet")
    calls = await utility_calls(services, record=record, name=tenant.name, spec=spec, wallet=wallet)
    if calls:
        await submit_as_wallet(
            services, wallet_id=wallet.id, calls=calls, operator_key=operator_key
        )
        record = await registry.utility(utility_id)
        assert record is not None
    async with services.db.session() as session:
        return await mirror_utility(session, tenant=tenant, wallet=wallet, record=record)


async def publish_program(
    services: ProgramServices, *, tenant: Tenant, spec: ProgramSpec, operator_key: str
) -> Program:
    """Create or update a program on chain (as the utility's admin, sent now), then in the
    catalog."""
    spec = checked_program_spec(spec)
    async with services.db.session() as session:
        utility = await repository.utility_of_tenant(session, tenant.id)
    if utility is None:
        raise InvalidInput("register the utility first (registerUtility)", field="externalId")
    wallet = await utility_wallet(services, tenant)
    call = program_call(
        registry_of(services.chain), utility=utility, spec=spec, sponsor=wallet.address
    )
    await submit_as_wallet(services, wallet_id=wallet.id, calls=[call], operator_key=operator_key)
    async with services.db.session() as session:
        row = await program_row(session, tenant=tenant, utility=utility, spec=spec)
        return write_program(row, spec)


async def register_vendor(services: ProgramServices, *, vendor: str, operator_key: str) -> None:
    registry = registry_of(services.chain)
    role = await registry.contract.functions.VENDOR_ROLE().call()
    if await registry.contract.functions.hasRole(role, vendor).call():
        return
    data = registry.contract.encode_abi("registerVendor", args=[vendor])
    await send_from_operator(
        services,
        operator_key=operator_key,
        to=registry.address,
        data=bytes.fromhex(data[2:]),
        gas=200_000,
    )


async def register_device_model(
    services: ProgramServices, *, spec: DeviceModelSpec, vendor_key: str
) -> bytes:
    """A vendor registers (or updates) one of its models; the vendor's own key pays the gas."""
    registry = registry_of(services.chain)
    model_id = model_id_of(spec.make, spec.model)
    details = [
        int(spec.device_type),
        spec.max_charge_w,
        spec.max_discharge_w,
        spec.energy_wh,
        spec.nominal_voltage_v,
        [protocol_id(p) for p in spec.protocols],
        spec.vendor_endpoint,
        spec.vendor_cert_fingerprint,
    ]
    existing = await registry.device_model(model_id)
    if existing is None:
        data = registry.contract.encode_abi(
            "registerDeviceModel", args=[spec.make, spec.model, *details]
        )
    else:
        data = registry.contract.encode_abi("updateDeviceModel", args=[model_id, *details])
    await send_from_operator(
        services,
        operator_key=vendor_key,
        to=registry.address,
        data=bytes.fromhex(data[2:]),
        gas=1_500_000,
    )
    return model_id


def address_of(private_key: str) -> str:
    return Account.from_key(private_key).address
