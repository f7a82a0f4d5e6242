"""Utility onboarding and program publishing (the Integration Service), vendors' device
models, and what a utility's administrator sees of its own utility. Each change is written on
chain first and mirrored in the catalog after it lands."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from eth_account import Account
from sqlalchemy.ext.asyncio import AsyncSession

from chain.addresses import client_address
from chain.calls import Call
from core.db import utc_now
from core.errors import Forbidden, InvalidInput, NotFound
from identity.models import Tenant
from identity.service import system_account
from programs import repository
from programs.deps import ProgramServices
from programs.models import Enrollment, FeePayer, Program, UtilityAccount
from programs.payment import approve_call
from programs.registry import ovpp_token, registry_of, routing_of
from registry_client.onchain import OnChainRegistry, program_id_of, utility_id_of
from registry_client.routing import model_id_of
from registry_client.service import AwarenessCount
from registry_client.types import PROTOCOLS, DeviceType, UtilityRecord, protocol_id
from relayer import sponsorship
from relayer.direct import send_from_operator, submit_as_wallet
from relayer.models import FundingStatus, RelayStatus, SponsorFunding
from wallet.models import Wallet

# What a utility's wallet lets the registry take for the fees of the programs it sponsors.
FEE_ALLOWANCE = 2**256 - 1


@dataclass(frozen=True)
class UtilitySpec:
    country: str
    region: str
    postal_codes: list[str]
    control_endpoints: dict[str, str]
    fee_recipient: str | None = None
    # None: the registry's (zero on a first registration)
    ca_cert_fingerprint: bytes | None = None


@dataclass(frozen=True)
class ProgramSpec:
    external_id: str
    name: str
    description: str
    fee_payer: FeePayer
    connection_fee: int
    protocols: list[str]
    eligible_device_types: list[DeviceType]
    min_charge_w: int = 0
    min_discharge_w: int = 0
    min_energy_wh: int = 0
    enrollment_bonus: int = 0
    per_event_reward: int = 0
    long_name: str | None = None
    program_type: str = "DEMAND_RESPONSE"
    active: bool = True


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


def utility_wallet_name(tenant: Tenant) -> str:
    """The system name of a utility's own wallet, a ``SYSTEM`` customer of its tenant (the
    name it had as a subject before migration 0015, so existing wallets keep it)."""
    return f"utility-account:{tenant.slug}"


async def utility_wallet(services: ProgramServices, tenant: Tenant) -> Wallet:
    """The utility's own custodial wallet: its registry admin and sponsor account. A system
    wallet: no token of any issuer, whatever its subject, signs in as it."""
    account = await system_account(
        services.db, tenant_id=tenant.id, name=utility_wallet_name(tenant), keyring=services.keyring
    )
    return account.wallet


async def onboard_utility(
    services: ProgramServices, *, tenant: Tenant, spec: UtilitySpec, operator_key: str
) -> UtilityAccount:
    """Register the utility in the registry, or bring its record there up to ``spec``
    (territory, control endpoints, fee recipient: ``updateUtility`` and ``setControlEndpoint``
    as the utility's admin), and approve the registry to take the fees of the programs it
    sponsors from its wallet. The catalog is then written from the record read back from the
    chain. Nothing is sent when the chain already matches."""
    spec = _checked_spec(spec)
    registry = registry_of(services.chain)
    wallet = await utility_wallet(services, tenant)
    utility_id = utility_id_of(tenant.slug)
    record = await registry.utility(utility_id)
    if record is None:
        await _register(
            services, tenant=tenant, spec=spec, wallet=wallet, operator_key=operator_key
        )
        record = await registry.utility(utility_id)
        assert record is not None
    if record.admin != wallet.address:
        raise Forbidden("the registry's admin of this utility is not its wallet")
    calls = _utility_changes(registry, record, name=tenant.name, spec=spec)
    token = ovpp_token(services.chain).address or ""
    allowance = (
        await services.chain.erc20(token)
        .functions.allowance(wallet.address, registry.address)
        .call()
    )
    if allowance < FEE_ALLOWANCE // 2:
        calls.append(approve_call(services, spender=registry.address, amount=FEE_ALLOWANCE))
    if calls:
        await submit_as_wallet(
            services, wallet_id=wallet.id, calls=calls, operator_key=operator_key
        )
        record = await registry.utility(utility_id)
        assert record is not None
    return await _mirror_utility(services, tenant=tenant, wallet=wallet, record=record)


def _checked_spec(spec: UtilitySpec) -> UtilitySpec:
    if len(spec.country) != 2:
        raise InvalidInput("country is an ISO 3166-1 alpha-2 code", field="country")
    if len(spec.region) > 10:
        raise InvalidInput("region is an ISO 3166-2 code, e.g. US-CA", field="region")
    if not spec.postal_codes or len(spec.postal_codes) > 128:
        raise InvalidInput("give 1 to 128 postal codes or ranges", field="postalCodes")
    fee_recipient = spec.fee_recipient
    if fee_recipient is not None:
        fee_recipient = client_address(fee_recipient, field="feeRecipient")
    return replace(
        spec, country=spec.country.upper(), region=spec.region.upper(), fee_recipient=fee_recipient
    )


async def _register(
    services: ProgramServices,
    *,
    tenant: Tenant,
    spec: UtilitySpec,
    wallet: Wallet,
    operator_key: str,
) -> None:
    """``registerUtility``: the registrar's (operator's) call, the one step the utility's
    wallet cannot take itself."""
    registry = registry_of(services.chain)
    data = registry.contract.encode_abi(
        "registerUtility",
        args=[
            utility_id_of(tenant.slug),
            wallet.address,
            tenant.name,
            spec.country,
            spec.region,
            spec.postal_codes,
            spec.fee_recipient or wallet.address,
            spec.ca_cert_fingerprint or bytes(32),
        ],
    )
    await send_from_operator(
        services,
        operator_key=operator_key,
        to=registry.address,
        data=bytes.fromhex(data[2:]),
        gas=1_500_000,
    )


def _utility_changes(
    registry: OnChainRegistry, record: UtilityRecord, *, name: str, spec: UtilitySpec
) -> list[Call]:
    """The admin calls that bring ``record`` up to ``spec``: ``updateUtility`` when a detail
    differs (an omitted fee recipient or certificate fingerprint stays as it is), and
    ``setControlEndpoint`` for each endpoint that differs, clearing those ``spec`` omits."""
    calls: list[Call] = []
    fee_recipient = spec.fee_recipient or record.fee_recipient
    fingerprint = spec.ca_cert_fingerprint or record.ca_cert_fingerprint
    wanted = (name, spec.country, spec.region, tuple(spec.postal_codes), fee_recipient, fingerprint)
    landed = (
        record.name,
        record.country,
        record.region,
        record.postal_codes,
        record.fee_recipient,
        record.ca_cert_fingerprint,
    )
    if wanted != landed:
        calls.append(
            registry.update_utility(
                utility_id=record.utility_id,
                name=name,
                country=spec.country,
                region=spec.region,
                postal_codes=list(spec.postal_codes),
                fee_recipient=fee_recipient,
                ca_cert_fingerprint=fingerprint,
            )
        )
    endpoints = dict.fromkeys((p for p in record.control_endpoints if p in PROTOCOLS), "") | dict(
        spec.control_endpoints
    )
    calls.extend(
        registry.set_control_endpoint(utility_id=record.utility_id, protocol=p, endpoint=e)
        for p, e in endpoints.items()
        if record.control_endpoints.get(p, "") != e
    )
    return calls


async def _mirror_utility(
    services: ProgramServices, *, tenant: Tenant, wallet: Wallet, record: UtilityRecord
) -> UtilityAccount:
    """The catalog's copy of the utility's territory, as it landed on chain."""
    async with services.db.session() as session:
        row = await repository.utility_of_tenant(session, tenant.id)
        if row is None:
            row = UtilityAccount(
                tenant_id=tenant.id,
                utility_id="0x" + record.utility_id.hex(),
                wallet_id=wallet.id,
                country=record.country,
                region=record.region,
            )
        row.country, row.region = record.country, record.region
        row.postal_codes = list(record.postal_codes)
        session.add(row)
    return row


async def publish_program(
    services: ProgramServices, *, tenant: Tenant, spec: ProgramSpec, operator_key: str
) -> Program:
    """Create or update a program on chain (as the utility's admin), then in the catalog."""
    if not spec.external_id.strip() or len(spec.external_id) > 100:
        raise InvalidInput("externalId must be 1 to 100 characters", field="externalId")
    async with services.db.session() as session:
        utility = await repository.utility_of_tenant(session, tenant.id)
        if utility is None:
            raise InvalidInput("register the utility first (registerUtility)", field="externalId")
        wallet = await session.get(Wallet, utility.wallet_id)
    assert wallet is not None
    registry = registry_of(services.chain)
    utility_id = bytes.fromhex(utility.utility_id[2:])
    call = registry.upsert_program(
        utility_id=utility_id,
        external_id=spec.external_id,
        protocols=spec.protocols,
        eligible_device_types=spec.eligible_device_types,
        min_charge_w=spec.min_charge_w,
        min_discharge_w=spec.min_discharge_w,
        min_energy_wh=spec.min_energy_wh,
        connection_fee=spec.connection_fee,
        sponsor=wallet.address if spec.fee_payer == FeePayer.SPONSOR else None,
        active=spec.active,
    )
    await submit_as_wallet(services, wallet_id=wallet.id, calls=[call], operator_key=operator_key)
    program_id = "0x" + program_id_of(utility_id, spec.external_id).hex()
    async with services.db.session() as session:
        row = await repository.program_by_registry_id(session, program_id)
        if row is None:
            row = Program(
                tenant_id=tenant.id,
                program_id=program_id,
                external_id=spec.external_id,
                name=spec.name,
                connection_fee=spec.connection_fee,
            )
        row.name = spec.name
        row.long_name = spec.long_name
        row.description = spec.description
        row.program_type = spec.program_type
        row.fee_payer = spec.fee_payer.value
        row.connection_fee = spec.connection_fee
        row.enrollment_bonus = spec.enrollment_bonus
        row.per_event_reward = spec.per_event_reward
        row.protocols = list(spec.protocols)
        row.eligible_device_types = [t.name for t in spec.eligible_device_types]
        row.min_charge_w, row.min_discharge_w, row.min_energy_wh = (
            spec.min_charge_w,
            spec.min_discharge_w,
            spec.min_energy_wh,
        )
        row.active = spec.active
        row.updated_at = utc_now()
        session.add(row)
    return row


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


async def tenant_by_slug(services: ProgramServices, slug: str) -> Tenant | None:
    async with services.db.session() as session:
        return await repository.tenant_by_slug(session, slug)


# -- the administrator's view of its own utility ------------------------------------------------


@dataclass(frozen=True)
class UtilityProfile:
    account: UtilityAccount | None  # None until the utility is registered
    control_endpoints: dict[str, str]  # protocol → endpoint, from the registry


async def utility_profile(services: ProgramServices, tenant_id: str) -> UtilityProfile:
    async with services.db.session() as session:
        utility = await repository.utility_of_tenant(session, tenant_id)
    if utility is None:
        return UtilityProfile(account=None, control_endpoints={})
    record = await registry_of(services.chain).utility(bytes.fromhex(utility.utility_id[2:]))
    endpoints = dict(record.control_endpoints) if record is not None else {}
    return UtilityProfile(account=utility, control_endpoints=endpoints)


async def utility_programs(session: AsyncSession, tenant_id: str) -> list[tuple[Program, int]]:
    """The utility's programs by name, each with its number of ACTIVE enrollments."""
    rows = await repository.programs_of_tenant(session, tenant_id)
    counts = await repository.active_enrollment_counts(session, tenant_id)
    return [(row, int(counts.get(row.id, 0))) for row in rows]


async def utility_enrollments(
    session: AsyncSession, *, tenant_id: str, program_row_id: str | None, first: int
) -> list[Enrollment]:
    """The utility's newest enrollments, of one of its own programs when ``program_row_id``."""
    if not 1 <= first <= 200:
        raise InvalidInput("first must be between 1 and 200", field="first")
    if program_row_id is not None:
        program = await session.get(Program, program_row_id)
        if program is None:
            raise NotFound("no such program")
        if program.tenant_id != tenant_id:
            raise Forbidden("this program belongs to another utility")
    return await repository.enrollments_of_tenant(
        session, tenant_id=tenant_id, program_row_id=program_row_id, first=first
    )


async def awareness(services: ProgramServices, tenant_id: str) -> list[AwarenessCount]:
    """Active connections by program and device type, from the registry."""
    async with services.db.session() as session:
        utility = await repository.utility_of_tenant(session, tenant_id)
    if utility is None:
        return []
    return await routing_of(services.chain).awareness(bytes.fromhex(utility.utility_id[2:]))


@dataclass(frozen=True)
class FundingView:
    """One funding of the sponsorship, as its administrator sees it."""

    row: SponsorFunding
    status: str  # PENDING, CREDITED, or FAILED (its job failed: nothing moved or credited)


@dataclass(frozen=True)
class SponsorBudget:
    """The utility's gas sponsorship in wei of the native token (all zero without one)."""

    active: bool
    funds_wei: int
    spent_wei: int
    remaining_wei: int
    sponsors_customer_transfers: bool
    sponsor_wallet: str | None  # the utility's wallet, which pays sponsored programs' fees
    pending_wei: int = 0  # on-chain fundings whose jobs are not confirmed yet
    fundings: list[FundingView] = field(default_factory=list)  # the newest first


SHOWN_FUNDINGS = 20


async def sponsor_budget(session: AsyncSession, tenant_id: str) -> SponsorBudget:
    sponsor = await sponsorship.sponsor_of_tenant(session, tenant_id)
    utility = await repository.utility_of_tenant(session, tenant_id)
    wallet = await session.get(Wallet, utility.wallet_id) if utility else None
    sponsor_wallet = wallet.address if wallet else None
    if sponsor is None:
        return SponsorBudget(
            active=False,
            funds_wei=0,
            spent_wei=0,
            remaining_wei=0,
            sponsors_customer_transfers=False,
            sponsor_wallet=sponsor_wallet,
        )
    spent = await sponsorship.spent_wei(session, sponsor.id)
    fundings = await sponsorship.fundings_of_sponsor(session, sponsor.id, first=SHOWN_FUNDINGS)
    return SponsorBudget(
        active=sponsor.active,
        funds_wei=sponsor.funds_wei,
        spent_wei=spent,
        remaining_wei=max(sponsor.funds_wei - spent, 0),
        sponsors_customer_transfers=sponsor.sponsors_transfers,
        sponsor_wallet=sponsor_wallet,
        pending_wei=await sponsorship.pending_funding_wei(session, sponsor.id),
        fundings=[
            FundingView(
                row,
                "FAILED"
                if row.status == FundingStatus.PENDING and job_status == RelayStatus.FAILED
                else row.status,
            )
            for row, job_status in fundings
        ],
    )
