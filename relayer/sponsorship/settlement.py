"""Settling sponsored jobs' charges: each reservation replaced by the job's real cost."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from relayer.models import Sponsor, SponsorCharge, SponsorCustomerDay
from relayer.sponsorship import repository


async def settle_charges(
    session: AsyncSession, actual_by_job: dict[str, int], *, lock_also: Iterable[str] = ()
) -> None:
    """Replace the reservations of these jobs by their real cost (gasUsed × effectiveGasPrice)
    in the charges and the running totals, a constant number of statements per sponsor.
    Sponsors are locked first, in one sorted pass with ``lock_also`` (sponsors the caller
    changes later in this transaction); charges and days are read after (docs/relayer.md,
    "Locks")."""
    settled_sponsor_ids = (
        await repository.sponsors_of_unsettled(session, actual_by_job) if actual_by_job else set()
    )
    locked = await repository.lock_in_order(session, settled_sponsor_ids | set(lock_also))
    sponsors = {sponsor_id: locked[sponsor_id] for sponsor_id in sorted(settled_sponsor_ids)}
    if not sponsors:
        return
    charges = await repository.unsettled_charges(session, actual_by_job)
    days = await repository.customer_days(
        session, {(c.sponsor_id, c.customer_id, c.created_at.date().isoformat()) for c in charges}
    )
    for sponsor_id, sponsor in sponsors.items():
        _settle_sponsor(
            sponsor,
            [c for c in charges if c.sponsor_id == sponsor_id],
            actual_by_job=actual_by_job,
            days=days,
        )
        session.add(sponsor)
    session.add_all([*charges, *days.values()])
    await session.flush()


def _settle_sponsor(
    sponsor: Sponsor,
    charges: list[SponsorCharge],
    *,
    actual_by_job: dict[str, int],
    days: dict[tuple[str, str, str], SponsorCustomerDay],
) -> None:
    """Each charge's difference to its real cost, applied to the sponsor's totals (its period
    only if the charge was made in it) and to the customer's day of the charge. A reservation
    grown by fee bumps is replaced whole: the charge holds all of it."""
    period_start = sponsor.period_started_at
    for charge in charges:
        delta = actual_by_job[charge.relay_transaction_id] - charge.amount_wei
        sponsor.spent_wei += delta
        created = charge.created_at
        if created >= period_start:
            sponsor.period_spent_wei = max(sponsor.period_spent_wei + delta, 0)
        day = days.get((sponsor.id, charge.customer_id, created.date().isoformat()))
        if day is not None:
            day.spent_wei = max(day.spent_wei + delta, 0)
        charge.amount_wei += delta
        charge.settled = True
