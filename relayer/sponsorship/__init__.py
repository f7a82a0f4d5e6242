"""Gas sponsorship by a utility: a sponsored action costs the customer nothing; a refusal is
typed and names its reason, and never falls back to charging the customer.

A sponsored job's charge is its reservation: its worst case when queued (``reservation``),
grown before a fee bump, and settled to the real cost once the job ends (``settlement``).
The rules are in ``rules``, the SQL in ``repository``; this module is the package's API."""

from relayer.sponsorship.funding import configure_sponsor, fund_sponsor
from relayer.sponsorship.repository import (
    lock,
    lock_in_order,
    spent_wei,
    sponsor_of_tenant,
    with_customer_day,
)
from relayer.sponsorship.reservation import (
    check_budget,
    commit_reserving,
    reserve,
    reserve_fee_bump,
    reserve_within_budget,
)
from relayer.sponsorship.rules import (
    CustomerDay,
    pays_customers_gas,
    period_ended,
    require_budget,
)
from relayer.sponsorship.settlement import settle_charges

__all__ = [
    "CustomerDay",
    "check_budget",
    "commit_reserving",
    "configure_sponsor",
    "fund_sponsor",
    "lock",
    "lock_in_order",
    "pays_customers_gas",
    "period_ended",
    "require_budget",
    "reserve",
    "reserve_fee_bump",
    "reserve_within_budget",
    "settle_charges",
    "spent_wei",
    "sponsor_of_tenant",
    "with_customer_day",
]
