"""The program catalog: which active programs serve a site and accept a device type."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import InvalidInput
from identity.models import Tenant
from programs import repository
from programs.models import Program, UtilityAccount
from registry_client.routing import postal_code_in, region_matches
from registry_client.types import SiteAddress


def serves_site(utility: UtilityAccount, site: SiteAddress) -> bool:
    """Whether the site is in the utility's territory (the routing's rules; a utility with no
    region here serves its whole country's listed postal codes)."""
    return (
        utility.country.upper() == site.country.upper()
        and (not utility.region or region_matches(site, utility.region))
        and postal_code_in(site.postal_code, tuple(utility.postal_codes))
    )


async def programs_at(
    session: AsyncSession, *, site: SiteAddress, device_type: str | None
) -> list[tuple[Program, Tenant, UtilityAccount]]:
    """Active programs whose utility serves the site (and that accept the device type)."""
    return [
        (program, tenant, utility)
        for program, tenant, utility in await repository.active_programs_with_utilities(session)
        if serves_site(utility, site)
        and not (device_type and device_type not in program.eligible_device_types)
    ]


async def program_by_id(session: AsyncSession, program_row_id: str) -> Program:
    program = await session.get(Program, program_row_id)
    if program is None:
        raise InvalidInput("no such program", field="programId")
    return program
