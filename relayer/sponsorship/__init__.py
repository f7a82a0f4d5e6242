"""Gas sponsorship by a utility: a sponsored action costs the customer nothing; a refusal is
typed and names its reason, and never falls back to charging the customer.

A sponsored job's charge is its reservation: its worst case when queued (``reservation``),
grown before a fee bump, and settled to the real cost once the job ends (``settlement``).
Its funds grow only with value received (``funding``): the utility's tokens moved on chain,
credited once their job is confirmed, or an operator's recorded credit.
The rules are in ``rules``, the SQL in ``repository``; this module is the package's API."""

from relayer.sponsorship.funding import (
    configure_sponsor,
    credit_by_operator,
    credit_confirmed_fundings,
    gas_funds_of,
    pending_funding_sponsors,
    record_on_chain_funding,
    sponsor_to_fund,
)
from relayer.sponsorship.repository import (
    funding_of,
    fundings_of_sponsor,
    lock,
    lock_in_order,
    pending_funding_wei,
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
    "credit_by_operator",
    "credit_confirmed_fundings",
    "funding_of",
    "fundings_of_sponsor",
    "gas_funds_of",
    "lock",
    "lock_in_order",
    "pays_customers_gas",
    "pending_funding_sponsors",
    "pending_funding_wei",
    "period_ended",
    "record_on_chain_funding",
    "require_budget",
    "reserve",
    "reserve_fee_bump",
    "reserve_within_budget",
    "settle_charges",
    "spent_wei",
    "sponsor_of_tenant",
    "sponsor_to_fund",
    "with_customer_day",
]
