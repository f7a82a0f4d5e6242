"""The sponsor budget rules: which cost a sponsor may cover, and the refusal a customer sees.
PostgreSQL applies the same rules, in the same order, at commit (migration 0014)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from core.db import utc_now
from relayer.errors import SponsorRefused
from relayer.models import Sponsor


class CustomerDay(NamedTuple):
    """What a sponsor has spent on a customer on one UTC day (``YYYY-MM-DD``)."""

    day: str
    spent_wei: int


def today() -> str:
    return utc_now().date().isoformat()


def pays_customers_gas(sponsor: Sponsor | None) -> bool:
    """Whether a utility's sponsorship pays its customers' gas (transfers and enrollments)."""
    return sponsor is not None and sponsor.active and sponsor.sponsors_transfers


def period_ended(sponsor: Sponsor) -> bool:
    return sponsor.period_started_at + timedelta(seconds=sponsor.period_seconds) <= utc_now()


def roll_period(sponsor: Sponsor, *, now: datetime) -> None:
    """Start a new budget period when the current one has ended at ``now`` (its spending
    resets). Only under the sponsor's lock: an unlocked row written back would overwrite what
    a locked writer reserved in the new period."""
    start = sponsor.period_started_at
    if start + timedelta(seconds=sponsor.period_seconds) > now:
        return
    while start + timedelta(seconds=sponsor.period_seconds) <= now:
        start += timedelta(seconds=sponsor.period_seconds)
    sponsor.period_started_at = start
    sponsor.period_spent_wei = 0


def require_budget(
    sponsor: Sponsor,
    *,
    cost_wei: int,
    customer_day_spent_wei: int,
    sponsored_program: bool = False,
) -> None:
    """Raise ``SponsorRefused`` unless ``sponsor`` can cover ``cost_wei`` for a customer who
    has used ``customer_day_spent_wei`` of it today; reservations count at their worst case
    until settled. ``sponsored_program``: an enrollment in a program whose fee the utility
    pays, whose gas it covers even when it does not sponsor its customers' other actions."""
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
