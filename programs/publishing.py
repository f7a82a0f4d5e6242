"""What a utility publishes in the registry, and how it is written: the specs an administrator
gives (its territory and endpoints, a program), the registry calls that bring the chain up to
a spec, and the catalog rows written from what landed. Both ways of sending those calls use
this: the utility's relayed changes (``programs.registry_changes``, the API's way) and the
operator's direct sends (``programs.operator``, the CLI's and the demo seed's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession

from chain.addresses import client_address
from chain.calls import Call
from core.db import utc_now
from core.errors import InvalidInput
from identity.models import Tenant
from programs import repository
from programs.deps import ProgramServices
from programs.models import FeePayer, Program, UtilityAccount
from programs.payment import approve_call
from programs.registry import ovpp_token, registry_of
from registry_client.onchain import OnChainRegistry, program_id_of, utility_id_of
from registry_client.types import PROTOCOLS, DeviceType, UtilityRecord
from wallet.models import Wallet

# What a utility's wallet lets the registry take for the fees of the programs it sponsors.
FEE_ALLOWANCE = 2**256 - 1
MAX_POSTAL_ENTRY = 32  # "94102-94110" is 11; the longest codes in use are 10
MAX_ENDPOINT = 256


@dataclass(frozen=True)
class UtilitySpec:
    country: str
    region: str
    postal_codes: list[str]
    control_endpoints: dict[str, str]
    fee_recipient: str | None = None
    # None: the registry's (zero on a first registration)
    ca_cert_fingerprint: bytes | None = None

    def to_json(self) -> dict:
        fingerprint = self.ca_cert_fingerprint
        return asdict(self) | {"ca_cert_fingerprint": fingerprint.hex() if fingerprint else None}

    @classmethod
    def from_json(cls, data: dict) -> UtilitySpec:
        fingerprint = data.get("ca_cert_fingerprint")
        return cls(
            **data | {"ca_cert_fingerprint": bytes.fromhex(fingerprint) if fingerprint else None}
        )


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

    def to_json(self) -> dict:
        """JSON-safe: amounts as decimal strings (exact whatever the database's JSON)."""
        return asdict(self) | {
            "fee_payer": self.fee_payer.value,
            "eligible_device_types": [t.name for t in self.eligible_device_types],
            "connection_fee": str(self.connection_fee),
            "enrollment_bonus": str(self.enrollment_bonus),
            "per_event_reward": str(self.per_event_reward),
        }

    @classmethod
    def from_json(cls, data: dict) -> ProgramSpec:
        return cls(
            **data
            | {
                "fee_payer": FeePayer(data["fee_payer"]),
                "eligible_device_types": [DeviceType[t] for t in data["eligible_device_types"]],
                "connection_fee": int(data["connection_fee"]),
                "enrollment_bonus": int(data["enrollment_bonus"]),
                "per_event_reward": int(data["per_event_reward"]),
            }
        )


def checked_utility_spec(spec: UtilitySpec) -> UtilitySpec:
    if len(spec.country) != 2:
        raise InvalidInput("country is an ISO 3166-1 alpha-2 code", field="country")
    if len(spec.region) > 10:
        raise InvalidInput("region is an ISO 3166-2 code, e.g. US-CA", field="region")
    if not spec.postal_codes or len(spec.postal_codes) > 128:
        raise InvalidInput("give 1 to 128 postal codes or ranges", field="postalCodes")
    if any(not 1 <= len(code) <= MAX_POSTAL_ENTRY for code in spec.postal_codes):
        raise InvalidInput(
            f"a postal code or range is 1 to {MAX_POSTAL_ENTRY} characters", field="postalCodes"
        )
    if any(len(endpoint) > MAX_ENDPOINT for endpoint in spec.control_endpoints.values()):
        raise InvalidInput(
            f"an endpoint is at most {MAX_ENDPOINT} characters", field="controlEndpoints"
        )
    fee_recipient = spec.fee_recipient
    if fee_recipient is not None:
        fee_recipient = client_address(fee_recipient, field="feeRecipient")
    return replace(
        spec, country=spec.country.upper(), region=spec.region.upper(), fee_recipient=fee_recipient
    )


def checked_program_spec(spec: ProgramSpec) -> ProgramSpec:
    if not spec.external_id.strip() or len(spec.external_id) > 100:
        raise InvalidInput("externalId must be 1 to 100 characters", field="externalId")
    return spec


def registration_call(
    registry: OnChainRegistry, *, tenant: Tenant, spec: UtilitySpec, admin: str
) -> Call:
    """``registerUtility``: the registrar's call, the one step the utility's wallet cannot
    take itself. Its control endpoints follow as the utility's own calls."""
    return registry.register_utility(
        utility_id=utility_id_of(tenant.slug),
        admin=admin,
        name=tenant.name,
        country=spec.country,
        region=spec.region,
        postal_codes=spec.postal_codes,
        fee_recipient=spec.fee_recipient or admin,
        ca_cert_fingerprint=spec.ca_cert_fingerprint or bytes(32),
    )


async def utility_calls(
    services: ProgramServices,
    *,
    record: UtilityRecord,
    name: str,
    spec: UtilitySpec,
    wallet: Wallet,
) -> list[Call]:
    """The utility's own calls that bring ``record`` up to ``spec`` (``updateUtility``, each
    differing ``setControlEndpoint``) and let the registry take the fees of the programs it
    sponsors (``approve``, when the allowance runs low). Empty when the chain matches."""
    registry = registry_of(services.chain)
    calls = _utility_changes(registry, record, name=name, spec=spec)
    token = ovpp_token(services.chain).address or ""
    allowance = (
        await services.chain.erc20(token)
        .functions.allowance(wallet.address, registry.address)
        .call()
    )
    if allowance < FEE_ALLOWANCE // 2:
        calls.append(approve_call(services, spender=registry.address, amount=FEE_ALLOWANCE))
    return calls


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


async def mirror_utility(
    session: AsyncSession, *, tenant: Tenant, wallet: Wallet, record: UtilityRecord
) -> UtilityAccount:
    """The catalog's copy of the utility's territory, as it landed on chain."""
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


def program_call(
    registry: OnChainRegistry, *, utility: UtilityAccount, spec: ProgramSpec, sponsor: str
) -> Call:
    """``upsertProgram`` as the utility's admin; ``sponsor`` (the utility's wallet) pays the
    fees of a ``SPONSOR`` program."""
    return registry.upsert_program(
        utility_id=bytes.fromhex(utility.utility_id[2:]),
        external_id=spec.external_id,
        protocols=spec.protocols,
        eligible_device_types=spec.eligible_device_types,
        min_charge_w=spec.min_charge_w,
        min_discharge_w=spec.min_discharge_w,
        min_energy_wh=spec.min_energy_wh,
        connection_fee=spec.connection_fee,
        sponsor=sponsor if spec.fee_payer == FeePayer.SPONSOR else None,
        active=spec.active,
    )


def program_id_in(utility: UtilityAccount, external_id: str) -> str:
    return "0x" + program_id_of(bytes.fromhex(utility.utility_id[2:]), external_id).hex()


async def program_row(
    session: AsyncSession, *, tenant: Tenant, utility: UtilityAccount, spec: ProgramSpec
) -> Program:
    """The catalog's row of the program, new (not offered: inactive) until a spec lands."""
    program_id = program_id_in(utility, spec.external_id)
    row = await repository.program_by_registry_id(session, program_id)
    if row is None:
        row = Program(
            tenant_id=tenant.id,
            program_id=program_id,
            external_id=spec.external_id,
            name=spec.name,
            connection_fee=spec.connection_fee,
            active=False,
        )
        session.add(row)
    return row


def write_program(row: Program, spec: ProgramSpec) -> Program:
    """The catalog's copy of a program, from the spec that landed on chain."""
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
    return row
