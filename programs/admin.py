"""What a utility's administrator sees of its own utility (its territory, programs,
enrollments, sponsorship), and the utility's own wallet. Its changes are written by
``programs.registry_changes`` (relayed) or ``programs.operator`` (the operator's direct sends)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Forbidden, InvalidInput, NotFound
from identity.models import Tenant
from identity.service import system_account
from programs import repository
from programs.deps import ProgramServices
from programs.models import Enrollment, Program, RegistryChange, UtilityAccount
from programs.registry import registry_of, routing_of
from registry_client.service import AwarenessCount
from relayer import sponsorship
from relayer.models import FundingStatus, RelayStatus, SponsorFunding
from wallet.models import Wallet


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


async def registry_changes(
    session: AsyncSession, tenant_id: str, *, first: int, external_id: str | None = None
) -> list[tuple[RegistryChange, str | None]]:
    """The utility's newest registry changes (of one program when ``external_id``), each with
    its current transaction's hash."""
    return await repository.registry_changes_of_tenant(
        session, tenant_id, first=first, external_id=external_id
    )


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
