"""A sponsored transfer's reservation, judged when the transfer is made (after its quote): each
budget rule refuses by name and changes nothing, and a reservation starts an ended period the
same way on both databases (PostgreSQL reserves when the transfer commits, in the trigger
``ovpp_reserve_sponsor_charge``; SQLite in Python)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from sqlmodel import func, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from relayer.models import SponsorCharge, SponsorCustomerDay
from relayer.sponsorship import sponsor_of_tenant
from tests.conftest import AUDIENCE
from tests.support.transfers import charge_of, jobs_of, quote, send
from tests.support.utilities import fresh_utility
from tests.support.wallets import (
    ChainReader,
    Customer,
    fresh_address,
    new_customer,
    wait_for_status,
)

OVPP = 10**18
HOUR = 3600


async def sponsor_state(services: Services, tenant_id: str) -> tuple:
    """What a reservation writes: the sponsor's totals and period, its charges and the days."""
    async with services.db.session() as session:
        sponsor = await sponsor_of_tenant(session, tenant_id)
        assert sponsor is not None
        charges = (
            await session.execute(
                select(func.count())
                .select_from(SponsorCharge)
                .where(SponsorCharge.sponsor_id == sponsor.id)
            )
        ).scalar_one()
        days = (
            await session.execute(
                select(SponsorCustomerDay.customer_id, SponsorCustomerDay.spent_wei).where(
                    SponsorCustomerDay.sponsor_id == sponsor.id
                )
            )
        ).all()
        return (
            sponsor.spent_wei,
            sponsor.period_spent_wei,
            sponsor.period_started_at,
            charges,
            sorted(days),
        )


async def change_sponsor(services: Services, tenant_id: str, **values: object) -> None:
    async with services.db.session() as session:
        sponsor = await sponsor_of_tenant(session, tenant_id)
        for name, value in values.items():
            setattr(sponsor, name, value)
        session.add(sponsor)


@asynccontextmanager
async def a_sponsored_customer(
    client, services: Services, deployer: Deployer, contracts: AddressBook
) -> AsyncIterator[tuple[Customer, str]]:
    """A customer with 5 OVPP of a fresh utility that sponsors transfers: (customer, tenant)."""
    async with fresh_utility(services, audience=AUDIENCE, sponsor_funds_wei=10**18) as (
        issuer,
        tenant_id,
    ):
        yield await new_customer(client, issuer, deployer, contracts, ovpp=5 * OVPP), tenant_id


def one_ovpp_to_a_fresh_address() -> dict[str, str]:
    return {"token": "OVPP", "to": fresh_address(), "amount": "1", "feeToken": "OVPP"}


RULES_IN_ORDER = {
    "NOT_ELIGIBLE": {"active": False},
    "PER_TRANSACTION_CAP": {"per_transaction_cap_wei": 1},
    "BUDGET_EXHAUSTED": {"funds_wei": 1},
    "PERIOD_CAP": {"period_cap_wei": 1},
    "CUSTOMER_DAILY_CAP": {"per_customer_daily_cap_wei": 1},
}


def breaking(reason: str, *, and_every_later_rule: bool) -> dict[str, object]:
    """The sponsor's changes that break ``reason``'s rule (and every rule after it)."""
    names = list(RULES_IN_ORDER)
    broken = names[names.index(reason) :] if and_every_later_rule else [reason]
    return {name: value for rule in broken for name, value in RULES_IN_ORDER[rule].items()}


@pytest.mark.parametrize("with_later_rules", [False, True], ids=["alone", "with-later-rules"])
@pytest.mark.parametrize("reason", list(RULES_IN_ORDER))
async def test_a_rule_that_refuses_at_the_transfer_names_itself_and_changes_nothing(
    reason: str,
    with_later_rules: bool,
    client,
    relayer,
    services: Services,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The quote was sponsored; the sponsor changed before the transfer. The transfer is
    refused with the rule's name and the sponsor's, and leaves no job, no charge, no day and
    the same totals: the sponsor is charged for nothing and the customer is never charged.
    With the rules after it broken too, the first rule in ``require_budget``'s order is the
    one named, on both databases."""
    async with a_sponsored_customer(client, services, deployer, contracts) as (
        customer,
        tenant_id,
    ):
        fields = one_ovpp_to_a_fresh_address()
        # A first sponsored transfer, so the customer's day and the totals are not empty.
        first = await quote(client, customer.token, **fields)
        sent = await send(client, customer.token, quote_id=first["id"], **fields)
        assert sent["__typename"] == "Transaction"
        # Settled before the snapshot: the relayer settling it during the refusal is no change
        # the refusal made.
        await wait_for_status(client, customer.token, sent["id"])
        fee_quote = await quote(client, customer.token, **fields)
        assert fee_quote["sponsored"] is True
        await change_sponsor(
            services, tenant_id, **breaking(reason, and_every_later_rule=with_later_rules)
        )
        before = await sponsor_state(services, tenant_id)

        result = await send(client, customer.token, quote_id=fee_quote["id"], **fields)

        assert result["__typename"] == "SponsorRefused", result
        assert result["reason"] == reason
        assert result["sponsorName"].endswith("sponsorship")
        assert await sponsor_state(services, tenant_id) == before
        assert before[3] == 1  # the first transfer's charge, and no other
        assert len(await jobs_of(services, customer.address)) == 1


async def test_a_transfer_in_an_ended_period_starts_the_current_one(
    client, relayer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    """The sponsor's period ended three periods and a bit ago with its cap reached. The
    transfer's reservation starts the period the clock is in (a whole number of periods
    later) with only its own cost spent, and adds it to the funds spent and the customer's
    day; settled, all three hold the real cost."""
    async with fresh_utility(
        services,
        audience=AUDIENCE,
        sponsor_funds_wei=10**18,
        period_seconds=HOUR,
        period_cap_wei=10**17,
    ) as (issuer, tenant_id):
        customer = await new_customer(client, issuer, deployer, contracts, ovpp=5 * OVPP)
        async with services.db.session() as session:
            sponsor = await sponsor_of_tenant(session, tenant_id)
            started = sponsor.period_started_at - timedelta(seconds=3 * HOUR + 100)
        await change_sponsor(
            services,
            tenant_id,
            period_started_at=started,
            period_spent_wei=10**17,
            spent_wei=10**17,
        )
        fields = one_ovpp_to_a_fresh_address()
        fee_quote = await quote(client, customer.token, **fields)
        assert fee_quote["sponsored"] is True

        result = await send(client, customer.token, quote_id=fee_quote["id"], **fields)
        assert result["__typename"] == "Transaction", result

        async with services.db.session() as session:
            sponsor = await sponsor_of_tenant(session, tenant_id)
        charge = await charge_of(services, result["id"])
        reserved = charge.amount_wei
        assert reserved > 0 and charge.settled is False
        assert sponsor.period_started_at == started + timedelta(seconds=3 * HOUR)
        assert (sponsor.spent_wei, sponsor.period_spent_wei) == (10**17 + reserved, reserved)
        assert charge.created_at >= sponsor.period_started_at
        state = await sponsor_state(services, tenant_id)
        assert state[3:] == (1, [(charge.customer_id, reserved)])

        final = await wait_for_status(client, customer.token, result["id"])
        assert final["status"] == "CONFIRMED", final
        async with services.db.session() as session:
            settled = await session.get_one(SponsorCharge, charge.id)
        cost = settled.amount_wei
        assert settled.settled and 0 < cost < reserved
        state = await sponsor_state(services, tenant_id)
        assert state[:2] == (10**17 + cost, cost)
        assert state[3:] == (1, [(charge.customer_id, cost)])


async def test_a_refused_transfer_can_be_made_with_its_key_once_the_sponsor_allows_it(
    client, relayer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    """A refusal takes nothing, the idempotency key included: after the utility tops up its
    funds, the same key and quote make the transfer, once."""
    async with a_sponsored_customer(client, services, deployer, contracts) as (
        customer,
        tenant_id,
    ):
        fields = one_ovpp_to_a_fresh_address()
        fee_quote = await quote(client, customer.token, **fields)
        await change_sponsor(services, tenant_id, funds_wei=1)
        key = str(uuid.uuid4())
        refused = await send(client, customer.token, quote_id=fee_quote["id"], key=key, **fields)
        assert refused["reason"] == "BUDGET_EXHAUSTED", refused
        await change_sponsor(services, tenant_id, funds_wei=10**18)
        made = await send(client, customer.token, quote_id=fee_quote["id"], key=key, **fields)
        again = await send(client, customer.token, quote_id=fee_quote["id"], key=key, **fields)
        assert made["__typename"] == "Transaction", made
        assert again["id"] == made["id"]
        assert [job.id for job in await jobs_of(services, customer.address)] == [made["id"]]
        assert (await sponsor_state(services, tenant_id))[3] == 1


async def test_concurrent_sponsored_transfers_of_one_utility_reserve_and_settle_exactly(
    client, relayer, services: Services, deployer: Deployer, contracts: AddressBook
) -> None:
    """Twelve customers of one utility transfer at once: each reserves under the sponsor's
    lock (on PostgreSQL when it commits, after inserting its job and charge), while the
    relayer settles the first ones under the same lock. Every transfer is accepted, none
    deadlocks, and once all are settled the sponsor's total, the customers' days and the
    charges each hold exactly what the chain says the transactions cost."""
    chain = ChainReader(deployer, contracts)
    async with fresh_utility(services, audience=AUDIENCE, sponsor_funds_wei=10**18) as (
        issuer,
        tenant_id,
    ):
        customers = [
            await new_customer(client, issuer, deployer, contracts, ovpp=2 * OVPP)
            for _ in range(12)
        ]
        fields = {"token": "OVPP", "amount": "1", "feeToken": "OVPP"}

        async def transfer(customer) -> dict:  # type: ignore[no-untyped-def]
            to = fresh_address()
            fee_quote = await quote(client, customer.token, to=to, **fields)
            return await send(client, customer.token, quote_id=fee_quote["id"], to=to, **fields)

        results = await asyncio.gather(*(transfer(customer) for customer in customers))
        assert [result["__typename"] for result in results] == ["Transaction"] * 12, results
        finals = [
            await wait_for_status(client, customer.token, result["id"])
            for customer, result in zip(customers, results, strict=True)
        ]
        assert {final["status"] for final in finals} == {"CONFIRMED"}, finals
        costs = {}
        for final in finals:
            receipt = chain.receipt(final["hash"])
            costs[final["id"]] = receipt["gasUsed"] * receipt["effectiveGasPrice"]

        async with services.db.session() as session:
            sponsor = await sponsor_of_tenant(session, tenant_id)
            charges = list(
                (
                    await session.execute(
                        select(SponsorCharge).where(SponsorCharge.sponsor_id == sponsor.id)
                    )
                ).scalars()
            )
        assert {c.relay_transaction_id: c.amount_wei for c in charges} == costs
        assert all(charge.settled for charge in charges)
        total = sum(costs.values())
        spent, period_spent, _started, count, days = await sponsor_state(services, tenant_id)
        assert (spent, period_spent, count) == (total, total, 12)
        assert sorted(spent for _customer, spent in days) == sorted(costs.values())
