"""The utility administrator's API (scope ``utility:admin``), always bound to the caller's own
utility: there is no argument that names another one, and ids of another utility's programs
are refused."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql import webhooks
from api.graphql.common import RESERVED_KEYS, TokenKind, TokenType, token_of_kind, wire_enum
from api.graphql.devices import DeviceType, Protocol
from api.graphql.events import (
    DemandResponseEvent,
    ProgramCapacity,
    events_of_program,
    program_capacity,
)
from api.graphql.failures import InsufficientFunds, InvalidInput, typed_failures
from api.graphql.programs import EnrollmentStatus, FeePayer, PaymentMethod
from api.graphql.registry_changes import RegistryChange
from api.graphql.rewards import (
    EventResult,
    Settlement,
    admin_contributions_csv,
    admin_event_result,
    admin_settlements,
)
from api.graphql.webhooks import WebhookDeliveryConnection, WebhookEndpoint
from chain.tokens import AmountError, TokenInfo, format_units, parse_units
from core.errors import InvalidInput as InvalidInputError
from identity.models import Tenant
from identity.principal import Principal, Scope
from programs import admin as program_admin
from programs import funding, publishing, registry_changes
from programs.models import FeePayer as FeePayerValue
from programs.models import Program as ProgramRow
from registry_client.types import DeviceType as DeviceTypeValue
from relayer.models import FundingSource

Info = strawberry.Info[RequestContext, None]


@strawberry.type
class ControlEndpoint:
    protocol: Protocol
    endpoint: str


@strawberry.input
class ControlEndpointInput:
    protocol: Protocol
    endpoint: str


@strawberry.input(
    description="The utility's registry record. Sent again, it updates the record on chain "
    "(territory, endpoints, fee recipient); an identical one sends nothing."
)
class RegisterUtilityInput:
    country: str
    region: str = strawberry.field(description='ISO 3166-2, e.g. "US-CA".')
    postal_codes: list[str] = strawberry.field(description='Codes or ranges, e.g. "94102-94110".')
    control_endpoints: list[ControlEndpointInput] = strawberry.field(
        description="All of them: a protocol left out has its endpoint cleared."
    )
    fee_recipient: str | None = strawberry.field(
        default=None,
        description="Receives the connection fees. Omitted: unchanged (at the first "
        "registration, the utility's own wallet).",
    )


@strawberry.input
class UpsertProgramInput:
    external_id: str
    name: str
    description: str = ""
    fee_payer: FeePayer = FeePayer.CUSTOMER
    connection_fee: str = strawberry.field(description="OVPP, decimal string.")
    protocols: list[Protocol]
    eligible_device_types: list[DeviceType]
    min_charge_w: int = 0
    min_discharge_w: int = 0
    min_energy_wh: int = 0
    enrollment_bonus: str = "0"
    per_event_reward: str = "0"
    active: bool = True


@strawberry.input
class FundSponsorshipInput:
    amount: str = strawberry.field(
        description="Tokens the utility's wallet sends to the fee treasury, decimal."
    )
    token: TokenKind = strawberry.field(
        default=TokenKind.OVPP,
        description="OVPP or STABLECOIN; the transfer's gas fee is paid in it too.",
    )
    idempotency_key: str = strawberry.field(description="Client-chosen. " + RESERVED_KEYS)


@strawberry.type
class AdminProgram:
    id: strawberry.ID
    external_id: str
    name: str
    fee_payer: FeePayer
    connection_fee: str
    protocols: list[Protocol]
    active: bool = strawberry.field(
        description="Offered to customers. A new program is not until its change is CONFIRMED."
    )
    active_enrollments: int
    tenant_id: strawberry.Private[str]

    @strawberry.field(description="The newest registry change of this program.")
    async def last_change(self, info: Info) -> RegistryChange | None:
        async with info.context.read_session() as session:
            rows = await program_admin.registry_changes(
                session, self.tenant_id, first=1, external_id=self.external_id
            )
        return RegistryChange.from_row(*rows[0]) if rows else None

    @classmethod
    def from_row(cls, row: ProgramRow, active_enrollments: int) -> AdminProgram:
        return cls(
            id=strawberry.ID(row.id),
            external_id=row.external_id,
            name=row.name,
            fee_payer=FeePayer(row.fee_payer),
            connection_fee=format_units(row.connection_fee, 18),
            protocols=[Protocol(p) for p in row.protocols],
            active=row.active,
            active_enrollments=active_enrollments,
            tenant_id=row.tenant_id,
        )


@strawberry.type
class AdminEnrollment:
    id: strawberry.ID
    status: EnrollmentStatus
    program_id: strawberry.ID
    protocol: Protocol
    payment_method: PaymentMethod
    fee: str
    created_at: datetime


SponsorFundingSource = wire_enum(
    FundingSource,
    name="SponsorFundingSource",
    description="Where a sponsorship's funds came from.",
    value_descriptions={
        "ON_CHAIN": "The utility's tokens, moved to the fee treasury by `fundSponsorship`.",
        "OPERATOR": "Credited by the operator for a payment (`reference`).",
        "LEGACY": "An administrator's unpaid credit, from before fundings moved value.",
    },
)


@strawberry.enum(description="A funding is credited once, when its transfer is confirmed.")
class SponsorFundingStatus(Enum):
    PENDING = "PENDING"
    CREDITED = "CREDITED"
    FAILED = "FAILED"


@strawberry.type(description="One top-up of the sponsorship's funds.")
class SponsorFunding:
    id: strawberry.ID
    source: SponsorFundingSource  # type: ignore[valid-type]
    status: SponsorFundingStatus
    credit: str = strawberry.field(description="Gas funds it adds: native-token equivalent.")
    token: TokenType | None = strawberry.field(description="What moved on chain (ON_CHAIN).")
    token_amount: str | None
    transaction_id: strawberry.ID | None = strawberry.field(
        description="The transfer to the fee treasury (ON_CHAIN)."
    )
    operator: str | None = strawberry.field(description="Who credited it (OPERATOR).")
    reference: str | None = strawberry.field(description="The payment's reference (OPERATOR).")
    created_at: datetime
    credited_at: datetime | None

    @classmethod
    def from_view(cls, view: program_admin.FundingView, tokens: list[TokenInfo]) -> SponsorFunding:
        row = view.row
        token = next((t for t in tokens if t.kind.value == row.token), None)
        return cls(
            id=strawberry.ID(row.id),
            source=SponsorFundingSource(row.source),
            status=SponsorFundingStatus(view.status),
            credit=format_units(row.amount_wei, 18),
            token=token_of_kind(tokens, row.token),
            token_amount=format_units(row.token_amount, token.decimals)
            if token is not None and row.token_amount is not None
            else None,
            transaction_id=strawberry.ID(row.relay_transaction_id)
            if row.relay_transaction_id
            else None,
            operator=row.operator,
            reference=row.reference,
            created_at=row.created_at,
            credited_at=row.credited_at,
        )


@strawberry.type
class SponsorBudget:
    active: bool
    funds: str = strawberry.field(description="Native-token equivalent, decimal.")
    spent: str
    remaining: str
    pending: str = strawberry.field(
        description="Funds on their way: fundings whose transfer is not confirmed yet."
    )
    fundings: list[SponsorFunding] = strawberry.field(description="The newest 20, newest first.")
    sponsors_customer_transfers: bool
    sponsor_wallet: str | None = strawberry.field(description="Pays sponsored programs' OVPP fees.")

    @classmethod
    def from_view(
        cls, budget: program_admin.SponsorBudget, tokens: list[TokenInfo]
    ) -> SponsorBudget:
        return cls(
            active=budget.active,
            funds=format_units(budget.funds_wei, 18),
            spent=format_units(budget.spent_wei, 18),
            remaining=format_units(budget.remaining_wei, 18),
            pending=format_units(budget.pending_wei, 18),
            fundings=[SponsorFunding.from_view(view, tokens) for view in budget.fundings],
            sponsors_customer_transfers=budget.sponsors_customer_transfers,
            sponsor_wallet=budget.sponsor_wallet,
        )


FundSponsorshipResult = Annotated[
    SponsorBudget | InsufficientFunds | InvalidInput, strawberry.union("FundSponsorshipResult")
]


@strawberry.type(description="Grid-level device awareness: active connections.")
class AwarenessCount:
    program_id: str = strawberry.field(description="The program's registry id (bytes32 hex).")
    external_id: str
    device_type: DeviceType
    active_connections: int


@strawberry.type(description="The signed-in administrator's own utility.")
class UtilityAdmin:
    slug: str
    name: str
    registered: bool
    country: str | None
    region: str | None
    postal_codes: list[str]
    control_endpoints: list[ControlEndpoint]
    tenant_id: strawberry.Private[str]

    @strawberry.field
    async def programs(self, info: Info) -> list[AdminProgram]:
        async with info.context.read_session() as session:
            rows = await program_admin.utility_programs(session, self.tenant_id)
        return [AdminProgram.from_row(row, active) for row, active in rows]

    @strawberry.field(description="Enrollments in this utility's programs, newest first.")
    async def enrollments(
        self, info: Info, program_id: strawberry.ID | None = None, first: int = 50
    ) -> list[AdminEnrollment]:
        async with info.context.read_session() as session:
            rows = await program_admin.utility_enrollments(
                session,
                tenant_id=self.tenant_id,
                program_row_id=str(program_id) if program_id is not None else None,
                first=first,
            )
        return [
            AdminEnrollment(
                id=strawberry.ID(row.id),
                status=EnrollmentStatus(row.status),
                program_id=strawberry.ID(row.program_row_id),
                protocol=Protocol(row.protocol),
                payment_method=PaymentMethod(row.payment_method),
                fee=format_units(row.fee_amount, 18),
                created_at=row.created_at,
            )
            for row in rows
        ]

    @strawberry.field(
        description="Active connections by program and device type, from the registry."
    )
    async def awareness(self, info: Info) -> list[AwarenessCount]:
        counts = await program_admin.awareness(info.context.services, self.tenant_id)
        return [
            AwarenessCount(
                program_id="0x" + c.program_id.hex(),
                external_id=c.external_id,
                device_type=DeviceType(c.device_type.name),
                active_connections=c.active_connections,
            )
            for c in counts
        ]

    @strawberry.field
    async def sponsor_budget(self, info: Info) -> SponsorBudget:
        async with info.context.read_session() as session:
            budget = await program_admin.sponsor_budget(session, self.tenant_id)
        return SponsorBudget.from_view(budget, info.context.services.chain.tokens)

    @strawberry.field(
        description="Demand-response events of one of the utility's programs, newest first, "
        "with each device's answer (the program server, docs/program-server.md)."
    )
    async def events(
        self, info: Info, program_id: strawberry.ID, first: int = 50
    ) -> list[DemandResponseEvent]:
        return await events_of_program(info, self.tenant_id, program_id, first)

    webhook_endpoints: list[WebhookEndpoint] = strawberry.field(
        resolver=webhooks.webhook_endpoints,
        description="Where the utility receives its app webhooks (docs/webhooks.md).",
    )
    webhook_deliveries: WebhookDeliveryConnection = strawberry.field(
        resolver=webhooks.webhook_deliveries,
        description="The app webhooks' delivery log, newest first (cursor pagination).",
    )

    @strawberry.field(
        description="Reward settlements of one of the utility's programs, newest first."
    )
    async def settlements(
        self, info: Info, program_id: strawberry.ID, first: int = 20
    ) -> list[Settlement]:
        return await admin_settlements(info, self.tenant_id, program_id, first)

    @strawberry.field(description="An event's figures (asked, delivered, paid) and its records.")
    async def event_results(self, info: Info, event_id: strawberry.ID) -> EventResult:
        return await admin_event_result(info, self.tenant_id, event_id)

    @strawberry.field(description="An event's contribution records as CSV (amounts in base units).")
    async def contributions_csv(self, info: Info, event_id: strawberry.ID) -> str:
        return await admin_contributions_csv(info, self.tenant_id, event_id)

    @strawberry.field(
        description="What the program's devices can give now, from their newest telemetry "
        "(docs/program-server.md, Aggregation)."
    )
    async def program_capacity(self, info: Info, program_id: strawberry.ID) -> ProgramCapacity:
        return await program_capacity(info, self.tenant_id, program_id)

    @strawberry.field(description="The utility's registry changes, newest first.")
    async def registry_changes(self, info: Info, first: int = 20) -> list[RegistryChange]:
        if not 1 <= first <= 100:
            raise InvalidInputError("first must be between 1 and 100", field="first")
        async with info.context.read_session() as session:
            rows = await program_admin.registry_changes(session, self.tenant_id, first=first)
        return [RegistryChange.from_row(row, tx_hash) for row, tx_hash in rows]


async def _admin(info: Info) -> tuple[Principal, Tenant]:
    principal = await info.context.principal()
    principal.require(Scope.UTILITY_ADMIN)
    async with info.context.read_session() as session:
        tenant = await session.get(Tenant, principal.tenant_id)
    assert tenant is not None
    return principal, tenant


async def _view(info: Info, tenant: Tenant) -> UtilityAdmin:
    await registry_changes.advance_changes_of(info.context.services, tenant.id)
    profile = await program_admin.utility_profile(info.context.services, tenant.id)
    utility = profile.account
    return UtilityAdmin(
        slug=tenant.slug,
        name=tenant.name,
        registered=utility is not None,
        country=utility.country if utility else None,
        region=utility.region if utility else None,
        postal_codes=list(utility.postal_codes) if utility else [],
        control_endpoints=[
            ControlEndpoint(protocol=Protocol(p), endpoint=e)
            for p, e in sorted(profile.control_endpoints.items())
            if p in Protocol.__members__
        ],
        tenant_id=tenant.id,
    )


async def utility_admin(info: Info) -> UtilityAdmin:
    _principal, tenant = await _admin(info)
    return await _view(info, tenant)


async def register_utility(info: Info, input: RegisterUtilityInput) -> UtilityAdmin:
    _principal, tenant = await _admin(info)
    await registry_changes.request_utility_change(
        info.context.services,
        tenant=tenant,
        spec=publishing.UtilitySpec(
            country=input.country,
            region=input.region,
            postal_codes=list(input.postal_codes),
            control_endpoints={e.protocol.value: e.endpoint for e in input.control_endpoints},
            fee_recipient=input.fee_recipient,
        ),
    )
    return await _view(info, tenant)


async def upsert_program(info: Info, input: UpsertProgramInput) -> AdminProgram:
    _principal, tenant = await _admin(info)
    try:
        fee = parse_units(input.connection_fee, 18)
        bonus = parse_units(input.enrollment_bonus, 18)
        reward = parse_units(input.per_event_reward, 18)
    except AmountError as error:
        raise InvalidInputError(str(error), field="connectionFee") from error
    row, _change = await registry_changes.request_program_change(
        info.context.services,
        tenant=tenant,
        spec=publishing.ProgramSpec(
            external_id=input.external_id,
            name=input.name,
            description=input.description,
            fee_payer=FeePayerValue(input.fee_payer.value),
            connection_fee=fee,
            protocols=[p.value for p in input.protocols],
            eligible_device_types=[DeviceTypeValue[t.value] for t in input.eligible_device_types],
            min_charge_w=input.min_charge_w,
            min_discharge_w=input.min_discharge_w,
            min_energy_wh=input.min_energy_wh,
            enrollment_bonus=bonus,
            per_event_reward=reward,
            active=input.active,
        ),
    )
    return AdminProgram.from_row(row, 0)


@typed_failures(FundSponsorshipResult)
async def fund_sponsorship(info: Info, input: FundSponsorshipInput) -> FundSponsorshipResult:  # type: ignore[valid-type]
    """The utility's wallet moves real tokens to the fee treasury; the funds grow once that
    transfer is confirmed (``pending`` until then). No other API call adds funds."""
    _principal, tenant = await _admin(info)
    services = info.context.services
    token = funding.funding_token(services, input.token.value)
    try:
        amount = parse_units(input.amount, token.decimals)
    except AmountError as error:
        raise InvalidInputError(str(error), field="amount") from error
    session = await info.context.session()
    await funding.fund_sponsorship(
        session,
        services=services,
        tenant=tenant,
        token_kind=token.kind.value,
        amount=amount,
        idempotency_key=input.idempotency_key,
    )
    budget = await program_admin.sponsor_budget(session, tenant.id)
    return SponsorBudget.from_view(budget, services.chain.tokens)
