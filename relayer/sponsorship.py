"""Gas sponsorship by a utility. A sponsored action costs the customer nothing; a refusal is
typed and names its reason, and never falls back to charging the customer.

A sponsored job's charge is its reservation: the quote's worst case (gas limit × max fee per
gas) when the job is queued, grown before a fee bump would take the job's worst case past it
(``reserve_fee_bump``, never past the sponsor's funds), and settled to the real cost once the
job ends (``settle_charges``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core.db import insert_rows, upsert, utc_now
from relayer.errors import SponsorRefused
from relayer.models import Sponsor, SponsorCharge, SponsorCustomerDay


async def sponsor_of_tenant(session: AsyncSession, tenant_id: str) -> Sponsor | None:
    statement = select(Sponsor).where(Sponsor.tenant_id == tenant_id)
    return (await session.execute(statement)).scalar_one_or_none()


def _today() -> str:
    return utc_now().date().isoformat()


def period_ended(sponsor: Sponsor) -> bool:
    return sponsor.period_started_at + timedelta(seconds=sponsor.period_seconds) <= utc_now()


def _roll_period(sponsor: Sponsor, *, now: datetime) -> None:
    """Start a new budget period when the current one has ended at ``now`` (its spending
    resets). Only under the sponsor's lock (``reserve``): an unlocked row written back would
    overwrite what a locked writer reserved in the new period."""
    start = sponsor.period_started_at
    if start + timedelta(seconds=sponsor.period_seconds) > now:
        return
    while start + timedelta(seconds=sponsor.period_seconds) <= now:
        start += timedelta(seconds=sponsor.period_seconds)
    sponsor.period_started_at = start
    sponsor.period_spent_wei = 0


class CustomerDay(NamedTuple):
    """What a sponsor has spent on a customer on one UTC day (``YYYY-MM-DD``)."""

    day: str
    spent_wei: int


async def _customer_day(session: AsyncSession, sponsor_id: str, customer_id: str, day: str) -> int:
    # Read from the database even when the row is in the session: callers hold the sponsor's
    # lock and must see what the last holder committed.
    row = await session.get(
        SponsorCustomerDay, (sponsor_id, customer_id, day), populate_existing=True
    )
    return row.spent_wei if row is not None else 0


def require_budget(
    sponsor: Sponsor,
    *,
    cost_wei: int,
    customer_day_spent_wei: int,
    sponsored_program: bool = False,
) -> None:
    """Raise ``SponsorRefused`` unless ``sponsor`` can cover ``cost_wei`` for a customer who
    has used ``customer_day_spent_wei`` of it today. Reads the running totals
    (O(1)); reservations count at their worst case until settled. ``sponsored_program``: an
    enrollment in a program whose fee the utility pays, whose gas it covers even when it does
    not sponsor its customers' other actions.

    PostgreSQL applies the same rules, in the same order, in ``ovpp_reserve_sponsor_charge``
    (migration 0014) when a sponsored transfer's commit reserves it."""
    # Judged as if the period had rolled, without rolling it: the sponsor may be an unlocked
    # row (a quote), and changing it would write it back.
    period_spent_wei = 0 if period_ended(sponsor) else sponsor.period_spent_wei
    reason = None
    if not sponsor.active or not (sponsor.sponsors_transfers or sponsored_program):
        reason = "NOT_ELIGIBLE"
    elif cost_wei > sponsor.per_transaction_cap_wei:
        reason = "PER_TRANSACTION_CAP"
    elif sponsor.spent_wei + cost_wei > sponsor.funds_wei:
        reason = "BUDGET_EXHAUSTED"
    elif period_spent_wei + cost_wei > sponsor.period_cap_wei:
        reason = "PERIOD_CAP"
    elif customer_day_spent_wei + cost_wei > sponsor.per_customer_daily_cap_wei:
        reason = "CUSTOMER_DAILY_CAP"
    if reason is not None:
        raise refusal(
            reason,
            sponsor_name=sponsor.name,
            per_transaction_cap_wei=sponsor.per_transaction_cap_wei,
        )


def refusal(reason: str, *, sponsor_name: str, per_transaction_cap_wei: int) -> SponsorRefused:
    """The refusal a customer sees for ``reason``, a budget rule's name."""
    messages = {
        "NOT_ELIGIBLE": f"{sponsor_name} does not sponsor this action",
        "PER_TRANSACTION_CAP": f"{sponsor_name} covers at most {per_transaction_cap_wei} wei "
        "of gas per transaction",
        "BUDGET_EXHAUSTED": f"{sponsor_name}'s sponsorship funds are spent",
        "PERIOD_CAP": f"{sponsor_name}'s budget for this period is spent",
        "CUSTOMER_DAILY_CAP": f"{sponsor_name} covers a limited amount of gas per customer "
        "per day; try again tomorrow",
    }
    return SponsorRefused(messages[reason], reason=reason, sponsor_name=sponsor_name)


def sponsorship_ended() -> SponsorRefused:
    """The refusal of a job whose quote's sponsor no longer exists."""
    return SponsorRefused("the sponsorship has ended", reason="NOT_ELIGIBLE")


async def check_budget(
    session: AsyncSession,
    *,
    sponsor: Sponsor,
    customer_id: str,
    cost_wei: int,
    sponsored_program: bool = False,
) -> None:
    """``require_budget`` with the customer's day read here."""
    require_budget(
        sponsor,
        cost_wei=cost_wei,
        customer_day_spent_wei=await _customer_day(session, sponsor.id, customer_id, _today()),
        sponsored_program=sponsored_program,
    )


def _with_customer_day_statement(*, by_id: bool) -> Any:
    day = SponsorCustomerDay
    return (
        select(Sponsor, day.spent_wei)
        .outerjoin(
            day,
            and_(
                day.sponsor_id == Sponsor.id,
                day.customer_id == bindparam("customer_id"),
                day.day == bindparam("day"),
            ),
        )
        .where(
            Sponsor.id == bindparam("sponsor")
            if by_id
            else Sponsor.tenant_id == bindparam("sponsor")
        )
    )


# Built once: building a statement costs more CPU than running it (docs/benchmarks.md).
_WITH_CUSTOMER_DAY = {by_id: _with_customer_day_statement(by_id=by_id) for by_id in (False, True)}
_LOCK_BY_ID = (
    select(Sponsor)
    .where(Sponsor.id == bindparam("sponsor"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_LOCK_BY_TENANT = (
    select(Sponsor)
    .where(Sponsor.tenant_id == bindparam("sponsor"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)


async def with_customer_day(
    session: AsyncSession,
    *,
    customer_id: str,
    tenant_id: str | None = None,
    sponsor_id: str | None = None,
    for_update: bool = False,
) -> tuple[Sponsor | None, CustomerDay]:
    """A utility's sponsor (by tenant or by id) and what it has spent on this customer today,
    in one statement; ``for_update`` locks the sponsor's row and re-reads it (see ``lock``),
    then reads the customer's day (today as of the lock) in a second statement: a statement
    that waited for the lock returns the sponsor's row as the lock holder left it, but any
    other row as it was before (PostgreSQL's READ COMMITTED), and every writer of a customer's
    day holds that lock."""
    parameters = {
        "customer_id": customer_id,
        "day": _today(),
        "sponsor": sponsor_id if sponsor_id is not None else tenant_id,
    }
    if for_update:
        lock_statement = _LOCK_BY_ID if sponsor_id is not None else _LOCK_BY_TENANT
        sponsor = (await session.execute(lock_statement, parameters)).scalar_one_or_none()
        day = _today()
        if sponsor is None:
            return None, CustomerDay(day, 0)
        return sponsor, CustomerDay(day, await _customer_day(session, sponsor.id, customer_id, day))
    row = (await session.execute(_WITH_CUSTOMER_DAY[sponsor_id is not None], parameters)).first()
    if row is None:
        return None, CustomerDay(parameters["day"], 0)
    return row[0], CustomerDay(parameters["day"], int(row[1] or 0))


async def reserve(
    session: AsyncSession,
    *,
    sponsor: Sponsor,
    customer_id: str,
    charge: SponsorCharge,
    customer_day: CustomerDay | None = None,
) -> None:
    """Record a sponsored job's worst-case cost in the running totals (sponsor row locked, so
    the totals and the customer's day, known or read here, cannot move meanwhile).

    One instant, read under the lock, decides the period, the customer's day and the charge's
    ``created_at``, which its settlement goes by: a reservation and its settlement always
    change the same day and period, even at midnight (a PostgreSQL transfer's reservation at
    commit goes by its charge's ``created_at`` the same way, migration 0014). ``customer_day``
    (read under the lock) is used only if it is that day's; otherwise the day is read here."""
    now = utc_now()
    _roll_period(sponsor, now=now)
    sponsor.spent_wei += charge.amount_wei
    sponsor.period_spent_wei += charge.amount_wei
    session.add(sponsor)
    day = now.date().isoformat()
    if customer_day is not None and customer_day.day == day:
        customer_day_spent_wei = customer_day.spent_wei
    else:
        customer_day_spent_wei = await _customer_day(session, sponsor.id, customer_id, day)
    charge.created_at = now
    await upsert(
        session,
        SponsorCustomerDay.__table__,
        {
            "sponsor_id": sponsor.id,
            "customer_id": customer_id,
            "day": day,
            "spent_wei": customer_day_spent_wei + charge.amount_wei,
        },
        update=("spent_wei",),
    )
    await insert_rows(session, charge)


async def reserve_within_budget(
    session: AsyncSession,
    *,
    sponsor_id: str,
    customer_id: str,
    relay_transaction_id: str,
    cost_wei: int,
) -> None:
    """Reserve ``cost_wei`` of the sponsor's budget for a sponsored transfer's job, inserted in
    this transaction, or refuse with ``SponsorRefused`` (``NOT_ELIGIBLE`` when the sponsorship
    has ended) and change nothing.

    PostgreSQL: the charge is inserted ``reserve_on_commit`` and the reservation is made when
    the transaction commits (the deferred trigger of migration 0014), so the sponsor's row is
    locked only while the commit runs, not across this transaction's round trips: the caller
    must commit with ``commit_reserving``, which raises the refusal. SQLite, whose one writer
    holds the database from this transaction's first write: ``with_customer_day``,
    ``require_budget`` and ``reserve`` here."""
    if session.get_bind().dialect.name == "postgresql":
        await insert_rows(
            session,
            SponsorCharge(
                sponsor_id=sponsor_id,
                customer_id=customer_id,
                relay_transaction_id=relay_transaction_id,
                amount_wei=cost_wei,
                created_at=utc_now(),
                reserve_on_commit=True,
            ),
        )
        return
    sponsor, customer_day = await with_customer_day(
        session, sponsor_id=sponsor_id, customer_id=customer_id, for_update=True
    )
    if sponsor is None:
        raise sponsorship_ended()
    require_budget(sponsor, cost_wei=cost_wei, customer_day_spent_wei=customer_day.spent_wei)
    await reserve(
        session,
        sponsor=sponsor,
        customer_id=customer_id,
        charge=SponsorCharge(
            sponsor_id=sponsor_id,
            customer_id=customer_id,
            relay_transaction_id=relay_transaction_id,
            amount_wei=cost_wei,
        ),
        customer_day=customer_day,
    )


# SQLSTATE of a refusal raised by the reservation at commit (migration 0014).
SPONSOR_REFUSED_SQLSTATE = "OV001"


async def commit_reserving(session: AsyncSession) -> None:
    """Commit a transaction that may hold a reservation ``reserve_within_budget`` left to the
    commit (PostgreSQL). A refusal rolls the whole transaction back and raises
    ``SponsorRefused`` with the rule's name, as ``require_budget`` would have."""
    try:
        await session.commit()
    except DBAPIError as error:
        refused = _refusal_at_commit(error)
        if refused is None:
            raise
        raise refused from None


def _refusal_at_commit(error: DBAPIError) -> SponsorRefused | None:
    # The driver's own exception (asyncpg's) carries the trigger's MESSAGE, DETAIL and HINT.
    raised = error.orig.__cause__ if error.orig is not None else None
    if getattr(raised, "sqlstate", None) != SPONSOR_REFUSED_SQLSTATE:
        return None
    reason = str(raised.message)  # type: ignore[union-attr]
    if reason == "ENDED":
        return sponsorship_ended()
    return refusal(
        reason,
        sponsor_name=str(raised.detail),  # type: ignore[union-attr]
        per_transaction_cap_wei=int(raised.hint),  # type: ignore[union-attr]
    )


async def settle_charges(
    session: AsyncSession, actual_by_job: dict[str, int], *, lock_also: Iterable[str] = ()
) -> None:
    """Replace reservations by the real cost (gasUsed × effectiveGasPrice) in the charges and
    the running totals; each sponsor's row is locked while its totals change. A constant
    number of statements per sponsor, whatever the number of charges. A reservation grown by
    fee bumps is replaced whole: the charge holds all of it (``reserve_fee_bump``).

    The charges and the customers' days are read after the sponsors' locks are taken: every
    writer of them (a reservation, a fee bump's, another settlement) holds its sponsor's lock,
    so what is written back is never computed from a total read before a concurrent one
    committed.

    ``lock_also``: sponsors the caller changes later in this transaction (the round's fee
    bumps), locked here in the same pass (``lock_in_order``), since a sponsor locked after
    this pass could be one that sorts before those it took."""
    from sqlalchemy import tuple_

    unsettled = (
        SponsorCharge.relay_transaction_id.in_(list(actual_by_job)),
        SponsorCharge.settled.is_(False),
    )
    settled_sponsor_ids = (
        set((await session.execute(select(SponsorCharge.sponsor_id).where(*unsettled))).scalars())
        if actual_by_job
        else set()
    )
    locked = await lock_in_order(session, settled_sponsor_ids | set(lock_also))
    sponsors = {sponsor_id: locked[sponsor_id] for sponsor_id in sorted(settled_sponsor_ids)}
    if not sponsors:
        return
    charges = list(
        (
            await session.execute(
                select(SponsorCharge).where(*unsettled).execution_options(populate_existing=True)
            )
        ).scalars()
    )
    day_keys = {(c.sponsor_id, c.customer_id, c.created_at.date().isoformat()) for c in charges}
    days = (
        {
            (row.sponsor_id, row.customer_id, row.day): row
            for row in (
                await session.execute(
                    select(SponsorCustomerDay)
                    .where(
                        tuple_(
                            SponsorCustomerDay.sponsor_id,
                            SponsorCustomerDay.customer_id,
                            SponsorCustomerDay.day,
                        ).in_(list(day_keys))
                    )
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        }
        if day_keys
        else {}
    )
    for sponsor_id, sponsor in sponsors.items():
        period_start = sponsor.period_started_at
        for charge in (c for c in charges if c.sponsor_id == sponsor_id):
            delta = actual_by_job[charge.relay_transaction_id] - charge.amount_wei
            sponsor.spent_wei += delta
            created = charge.created_at
            if created >= period_start:
                sponsor.period_spent_wei = max(sponsor.period_spent_wei + delta, 0)
            day = days.get((sponsor_id, charge.customer_id, created.date().isoformat()))
            if day is not None:
                day.spent_wei = max(day.spent_wei + delta, 0)
            charge.amount_wei += delta
            charge.settled = True
        session.add(sponsor)
    session.add_all([*charges, *days.values()])
    await session.flush()


async def lock(session: AsyncSession, sponsor: Sponsor | str) -> Sponsor:
    """The sponsor's row, locked and re-read: budget checks and total updates of one sponsor
    are serialised (row lock in PostgreSQL; SQLite has one writer) and see current totals.

    Every lock on a sponsor's row is ``FOR NO KEY UPDATE``: a transaction that inserted a row
    with a foreign key to the sponsor (a customer's day, a funding) holds ``KEY SHARE`` on it
    until it commits, which ``FOR UPDATE`` would wait for, and deadlock with when that
    transaction then waits for the sponsor itself. ``NO KEY UPDATE`` still excludes every
    other writer of the budget. (Jobs and charges have no such key: migration 0014.)"""
    sponsor_id = sponsor if isinstance(sponsor, str) else sponsor.id
    return (await session.execute(_LOCK_BY_ID, {"sponsor": sponsor_id})).scalar_one()


async def lock_in_order(session: AsyncSession, sponsor_ids: Iterable[str]) -> dict[str, Sponsor]:
    """These sponsors' rows, locked (``lock``) in sorted id order: the one order in which every
    transaction that locks several sponsors takes them, so that no two of them can each hold a
    sponsor the other waits for."""
    return {sponsor_id: await lock(session, sponsor_id) for sponsor_id in sorted(set(sponsor_ids))}


async def reserve_fee_bump(
    session: AsyncSession,
    *,
    sponsor_id: str,
    relay_transaction_id: str,
    gas_limit: int,
    max_fee_per_gas: int,
    min_max_fee_per_gas: int,
) -> int | None:
    """Before a sponsored job's transaction is signed again at ``max_fee_per_gas`` (a fee
    bump), grow the job's reservation to its new worst case, ``gas_limit`` × the fee, as far
    as the sponsor's remaining funds (funds − spent) allow. Returns the highest fee up to
    ``max_fee_per_gas`` that the reservation now covers; ``None``, changing nothing, when
    the funds do not cover ``min_max_fee_per_gas`` (the smallest replacement a node accepts),
    or when the job has no open reservation to grow.

    The growth goes wherever the reservation went: the charge, ``spent_wei``, the customer's
    day of the charge, and ``period_spent_wei`` if the charge was made in the current period,
    so that its settlement takes the whole reservation back from the same totals.

    Funds are a hard limit: they are what the utility paid in, and gas past them would be
    spent on its behalf with money it never gave. The caps (per transaction, per customer per
    day, per period) are not applied: they were checked when the job was accepted, and a bump
    only gets an accepted, already published transaction mined; one that cannot be bumped
    stays stuck, holding back the customer and every later transaction of its relayer key.
    A bump may therefore take a total past a cap; later jobs are then refused until it is
    settled or the cap's day or period ends.

    Takes the sponsor's lock (``lock``); the charge and the customer's day are read after
    it, as every writer of them holds it. The caller must have taken it already in its round's
    one pass over sponsors (``settle_charges``'s ``lock_also``), or hold no other sponsor."""
    sponsor = await lock(session, sponsor_id)
    charge = (
        await session.execute(
            select(SponsorCharge)
            .where(
                SponsorCharge.relay_transaction_id == relay_transaction_id,
                SponsorCharge.settled.is_(False),
            )
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if charge is None:
        return None
    remaining_funds_wei = max(sponsor.funds_wei - sponsor.spent_wei, 0)
    covered = min(max_fee_per_gas, (charge.amount_wei + remaining_funds_wei) // gas_limit)
    if covered < min_max_fee_per_gas:
        return None
    growth = gas_limit * covered - charge.amount_wei
    if growth <= 0:
        return covered
    sponsor.spent_wei += growth
    if charge.created_at >= sponsor.period_started_at:
        sponsor.period_spent_wei += growth
    day_key = (sponsor.id, charge.customer_id, charge.created_at.date().isoformat())
    day = await session.get(SponsorCustomerDay, day_key, populate_existing=True)
    if day is None:  # written with the charge, so only ever missing from older data
        day = SponsorCustomerDay(
            sponsor_id=day_key[0], customer_id=day_key[1], day=day_key[2], spent_wei=0
        )
    day.spent_wei += growth
    charge.amount_wei += growth
    session.add_all([sponsor, charge, day])
    await session.flush()
    return covered


async def configure_sponsor(
    session: AsyncSession,
    *,
    tenant_id: str,
    name: str,
    add_funds_wei: int = 0,
    per_transaction_cap_wei: int | None = None,
    per_customer_daily_cap_wei: int | None = None,
    period_cap_wei: int | None = None,
    period_seconds: int | None = None,
    active: bool | None = None,
) -> Sponsor:
    """Create or update a utility's sponsorship; ``add_funds_wei`` tops its funds up."""
    if add_funds_wei < 0:
        raise ValueError("funds can only be added")
    sponsor = (
        await session.execute(
            select(Sponsor).where(Sponsor.tenant_id == tenant_id).with_for_update(key_share=True)
        )
    ).scalar_one_or_none()
    if sponsor is None:
        sponsor = Sponsor(
            tenant_id=tenant_id,
            name=name,
            funds_wei=0,
            per_transaction_cap_wei=per_transaction_cap_wei or 10**16,
            per_customer_daily_cap_wei=per_customer_daily_cap_wei or 10**17,
            period_cap_wei=period_cap_wei or 10**19,
        )
    sponsor.name = name
    sponsor.funds_wei += add_funds_wei
    if per_transaction_cap_wei is not None:
        sponsor.per_transaction_cap_wei = per_transaction_cap_wei
    if per_customer_daily_cap_wei is not None:
        sponsor.per_customer_daily_cap_wei = per_customer_daily_cap_wei
    if period_cap_wei is not None:
        sponsor.period_cap_wei = period_cap_wei
    if period_seconds is not None:
        sponsor.period_seconds = period_seconds
    if active is not None:
        sponsor.active = active
    session.add(sponsor)
    await session.flush()
    return sponsor


async def spent_wei(session: AsyncSession, sponsor_id: str) -> int:
    sponsor = await session.get(Sponsor, sponsor_id)
    return sponsor.spent_wei if sponsor is not None else 0


async def fund_sponsor(
    session: AsyncSession, *, tenant_id: str, name: str, amount_wei: int, idempotency_key: str
) -> Sponsor:
    """Add ``amount_wei`` to the utility's sponsorship funds once per idempotency key."""
    from relayer.models import SponsorFunding

    if amount_wei <= 0:
        raise ValueError("a funding adds a positive amount")
    sponsor = await configure_sponsor(session, tenant_id=tenant_id, name=name)
    existing = (
        await session.execute(
            select(SponsorFunding).where(
                SponsorFunding.sponsor_id == sponsor.id,
                SponsorFunding.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        if existing.amount_wei != amount_wei:
            from core.errors import InvalidInput

            raise InvalidInput(
                "this idempotency key was used for another amount", field="idempotencyKey"
            )
        return sponsor
    session.add(
        SponsorFunding(
            sponsor_id=sponsor.id, idempotency_key=idempotency_key, amount_wei=amount_wei
        )
    )
    sponsor.funds_wei += amount_wei
    session.add(sponsor)
    await session.flush()
    return sponsor
