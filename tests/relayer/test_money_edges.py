"""Edges of the value-moving request path, seen from the API and the database: amounts parsed
exactly, and a sponsor's running totals that stay true to what it paid."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from chain.tokens import AmountError, parse_units
from core.db import utc_now
from identity.service import provision
from relayer.models import (
    PIPELINE_STATUSES,
    FeeQuote,
    JobKind,
    RelayStatus,
    RelayTransaction,
    Sponsor,
    SponsorCharge,
    SponsorCustomerDay,
    WalletPolicy,
)
from relayer.service import TransferInput, commit_transfer, request_transfer
from relayer.sponsorship import reservation, settle_charges
from relayer.sponsorship import rules as sponsorship_rules
from relayer.worker import RelayerWorker
from tests.support.graphql import error_codes, gql
from tests.support.issuer import TestIssuer
from tests.support.own_stack import (
    OwnStack,
    Sender,
    new_sender,
    queue_transfer,
    queue_transfers,
    sponsor_the_stacks_utility,
    tick_until,
    work_until_final,
)
from tests.support.transfers import QUOTE, quote, send
from tests.support.wallets import fresh_address, new_customer
from wallet.models import Wallet

OVPP = 10**18
USD = 10**6


@pytest.mark.parametrize("decimals", [0, 6, 18])
def test_no_amount_of_2_to_the_256_base_units_or_more_is_parsed(decimals: int) -> None:
    """Whatever the token's decimals: a uint256 on chain, NUMERIC(78, 0) in the database.
    With 18 decimals a 78-digit whole part alone would be up to 10**96 base units."""
    largest = 2**256 - 1
    whole, fraction = divmod(largest, 10**decimals)
    text = f"{whole}.{fraction:0{decimals}d}" if decimals else str(whole)
    assert parse_units(text, decimals) == largest
    for too_large in (largest + 1, 10**78 * 10**decimals):
        whole, fraction = divmod(too_large, 10**decimals)
        text = f"{whole}.{fraction:0{decimals}d}" if decimals else str(whole)
        with pytest.raises(AmountError, match="too large"):
            parse_units(text, decimals)


async def test_an_amount_is_parsed_exactly_whatever_its_number_of_digits(
    client, services: Services, test_issuer: TestIssuer, deployer: Deployer, contracts: AddressBook
) -> None:
    """More than 28 significant digits (Decimal's default precision) is still exact: the amount
    is never rounded into one the customer did not type, and excess decimals are refused even
    when they would round away."""
    customer = await new_customer(
        client, test_issuer, deployer, contracts, ovpp=5 * OVPP, stablecoin=5 * USD
    )
    to = fresh_address()
    for too_precise in ("1.0000000000000000000000000001", "1.00000000000000000000000000000000001"):
        body = await gql(
            client,
            QUOTE,
            {"input": {"token": "OVPP", "to": to, "amount": too_precise, "feeToken": "OVPP"}},
            token=customer.token,
        )
        assert error_codes(body) == ["INVALID_INPUT"], (too_precise, body)

    # 11 whole digits and 18 decimals: 29 significant digits, a valid OVPP amount (under the
    # wallet's daily limit, so that what refuses it is the balance, which names the amount).
    async with services.db.session() as session:
        wallet = (
            await session.execute(select(Wallet).where(Wallet.address == customer.address))
        ).scalar_one()
        session.add(WalletPolicy(wallet_id=wallet.id, token="OVPP", daily_limit=2**255))
    amount = "12345678901.234567890123456789"
    fee_quote = await quote(
        client, customer.token, token="OVPP", to=to, amount=amount, feeToken="STABLECOIN"
    )
    refusal = await send(
        client,
        customer.token,
        quote_id=fee_quote["id"],
        token="OVPP",
        to=to,
        amount=amount,
        feeToken="STABLECOIN",
    )
    assert refusal["__typename"] == "InsufficientFunds", refusal
    assert refusal["required"] == amount  # not 12345678901.23456789012345679

    # The largest uint256 in base units is a valid amount (refused for funds); one more is not.
    largest = format_base_units(2**256 - 1)
    body = await gql(
        client,
        QUOTE,
        {"input": {"token": "OVPP", "to": to, "amount": largest, "feeToken": "OVPP"}},
        token=customer.token,
    )
    assert "errors" not in body, body
    body = await gql(
        client,
        QUOTE,
        {
            "input": {
                "token": "OVPP",
                "to": to,
                "amount": format_base_units(2**256),
                "feeToken": "OVPP",
            }
        },
        token=customer.token,
    )
    assert error_codes(body) == ["INVALID_INPUT"], body
    body = await gql(
        client,
        QUOTE,
        {"input": {"token": "OVPP", "to": to, "amount": "9" * 5000, "feeToken": "OVPP"}},
        token=customer.token,
    )
    assert error_codes(body) == ["INVALID_INPUT"], body


def format_base_units(raw: int) -> str:
    whole, fraction = divmod(raw, OVPP)
    return f"{whole}.{fraction:018d}"


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_sponsored_transfer_the_node_refuses_gives_its_reservation_back(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The node refuses a sponsored job's transaction outright, so the job fails having cost
    nobody any gas. Its worst-case reservation must not stay in the sponsor's totals (its
    funds, its period, the customer's day) as if it had been paid: settled at 0."""
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    [doomed] = await queue_transfers(own_stack, [sender], count=1)
    async with own_stack.services.db.session() as session:
        job = await session.get_one(RelayTransaction, doomed.job_id)
        assert job.sponsored is True
        job.gas_limit = 100_000_000  # anvil: "intrinsic gas too high"
        session.add(job)

    await work_until_final(own_stack)

    async with own_stack.services.db.session() as session:
        job = await session.get_one(RelayTransaction, doomed.job_id)
        charge = (
            await session.execute(
                select(SponsorCharge).where(SponsorCharge.relay_transaction_id == doomed.job_id)
            )
        ).scalar_one()
        sponsor = await session.get_one(Sponsor, sponsor_id)
        days = await customer_days(session, sponsor_id)
    assert job.status == RelayStatus.FAILED and "rejected by the node" in (job.error or "")
    assert (charge.settled, charge.amount_wei) == (True, 0)
    assert (sponsor.spent_wei, sponsor.period_spent_wei) == (0, 0)
    assert [day.spent_wei for day in days] == [0]


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_the_node_refusing_sponsored_jobs_holds_no_sponsor_lock_while_the_gas_price_is_read(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """Two sponsored jobs the node refuses in one round: each fails and a filler takes its
    relayer nonce, signed at a gas price read from the node. That read (a network call of up
    to 10 s) must happen while no sponsor's row is locked, or every sponsored transfer of the
    utility would wait on the node; both reservations are settled at 0."""
    services = own_stack.services
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    doomed = await queue_transfers(own_stack, [sender], count=2)
    async with services.db.session() as session:
        for transfer in doomed:
            job = await session.get_one(RelayTransaction, transfer.job_id)
            assert job.sponsored is True
            job.gas_limit = 100_000_000  # anvil: "intrinsic gas too high"
            session.add(job)

    worker = RelayerWorker(services, name="test-relayer")
    real_gas_price = worker.read_gas_price
    sponsor_locked_during_reads: list[bool] = []

    async def gas_price_probing_the_sponsor() -> tuple[int, int]:
        sponsor_locked_during_reads.append(await sponsor_row_is_locked(services, sponsor_id))
        return await real_gas_price()

    worker.read_gas_price = gas_price_probing_the_sponsor  # type: ignore[method-assign]
    try:
        await tick_until(
            worker,
            services.db,
            lambda counts: not counts.keys() & set(PIPELINE_STATUSES),
        )
    finally:
        await worker.rpc.close()

    async with services.db.session() as session:
        jobs = [await session.get_one(RelayTransaction, t.job_id) for t in doomed]
        charges = list(
            (
                await session.execute(
                    select(SponsorCharge).where(
                        SponsorCharge.relay_transaction_id.in_([t.job_id for t in doomed])
                    )
                )
            ).scalars()
        )
        fillers = (
            await session.execute(
                select(RelayTransaction.id).where(RelayTransaction.kind == JobKind.NONCE_FILL)
            )
        ).all()
        sponsor = await session.get_one(Sponsor, sponsor_id)
    assert [job.status for job in jobs] == [RelayStatus.FAILED] * 2
    assert all("rejected by the node" in (job.error or "") for job in jobs)
    assert len(fillers) == 2
    assert sorted((c.settled, c.amount_wei) for c in charges) == [(True, 0)] * 2
    assert (sponsor.spent_wei, sponsor.period_spent_wei) == (0, 0)
    assert len(sponsor_locked_during_reads) >= 2  # the round's price, the fillers' price
    assert not any(sponsor_locked_during_reads), sponsor_locked_during_reads


async def sponsor_row_is_locked(services: Services, sponsor_id: str) -> bool:
    """Whether another transaction holds the sponsor's row lock, tried without waiting: on
    PostgreSQL the row lock itself; on SQLite the database's write lock, which every holder of
    a sponsor's lock has (its single writer is what serialises sponsors there)."""
    if services.db.is_sqlite:
        path = make_url(services.settings.resolved_database_url).database
        assert path is not None
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        finally:
            if probe.in_transaction:
                probe.execute("ROLLBACK")
            probe.close()
        return False
    async with services.db.sessionmaker() as session:
        try:
            await session.execute(
                text("SELECT id FROM sponsors WHERE id = :id FOR UPDATE NOWAIT"), {"id": sponsor_id}
            )
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == "55P03":  # lock_not_available
                return True
            raise
        finally:
            await session.rollback()
        return False


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_settling_a_charge_keeps_a_reservation_made_meanwhile_for_the_customers_day(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A customer's first sponsored transfer is being settled by the worker while their second
    one is made, in a transaction still open. The customer's day must end as the first one's
    real cost plus the second one's reservation: the settlement must not write back a day
    total it read before the lock (the daily cap would then forget the second).

    SQLite: the open transaction holds the database, so the settlement waits for its commit.
    PostgreSQL: the open transaction holds no lock on the sponsor (its reservation is made by
    its commit), so the settlement finishes first and the commit's reservation waits for
    nothing; each reads the customer's day under the sponsor's lock."""
    services = own_stack.services
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    [first] = await queue_transfers(own_stack, [sender], count=1)

    # The second transfer, through the service the API calls, in a transaction left open.
    fields = {"token": "OVPP", "to": fresh_address(), "amount": "0.5", "feeToken": "STABLECOIN"}
    second_quote = await gql(
        own_stack.client, QUOTE, {"input": fields}, token=sender.customer.token
    )
    second_session, second = await transfer_left_uncommitted(
        own_stack, sender, fields, quote_id=second_quote["data"]["quoteTransfer"]["id"]
    )
    second_reservation = (
        second.gas_limit * (await second_session.get_one(FeeQuote, second.quote_id)).max_fee_per_gas
    )
    async with services.db.session() as session:
        first_charge_id = (
            await session.execute(
                select(SponsorCharge.id).where(SponsorCharge.relay_transaction_id == first.job_id)
            )
        ).scalar_one()

    worker = RelayerWorker(services, name="test-relayer")
    try:
        # The worker signs, sends and settles the first transfer.
        round_one = asyncio.create_task(worker.tick())
        if services.db.is_sqlite:
            await until_another_session_waits_for_a_lock(services)
        else:  # nothing waits for the open transfer: the first is settled before it commits
            await round_one
            await work_until_final(own_stack)
            async with services.db.session() as session:
                assert (await session.get_one(SponsorCharge, first_charge_id)).settled
        await commit_transfer(second_session)
        await second_session.close()
        await round_one
        await work_until_final(own_stack)
    finally:
        await worker.rpc.close()

    async with services.db.session() as session:
        charges = {
            charge.relay_transaction_id: charge
            for charge in (await session.execute(select(SponsorCharge))).scalars()
        }
        [day] = await customer_days(session, sponsor_id)
        sponsor = await session.get_one(Sponsor, sponsor_id)
    assert charges[first.job_id].settled and charges[second.id].settled
    assert second_reservation > 0
    total = sum(charge.amount_wei for charge in charges.values())
    assert (day.spent_wei, sponsor.spent_wei, sponsor.period_spent_wei) == (total, total, total)


async def transfer_left_uncommitted(
    stack: OwnStack, sender: Sender, fields: dict[str, str], *, quote_id: str
) -> tuple[AsyncSession, RelayTransaction]:
    """The quoted transfer ``fields`` (GraphQL names) requested through the service the API
    calls, in a session left open: whatever it locked stays locked until the caller commits
    (and closes) the session."""
    services = stack.services
    principal = await services.token_validator.validate(sender.customer.token)
    account = await provision(services.db, principal=principal, keyring=services.keyring)
    session = services.db.sessionmaker()
    job = await request_transfer(
        session,
        services=services,
        account=account,
        raw=TransferInput(
            token=fields["token"],
            to=fields["to"],
            amount=fields["amount"],
            fee_token=fields["feeToken"],
        ),
        quote_id=quote_id,
        idempotency_key=str(uuid.uuid4()),
    )
    return session, job


async def reserved_for(session: AsyncSession, job_id: str) -> int:
    """What the sponsor's charge for the job holds: its reservation until settled."""
    statement = select(SponsorCharge.amount_wei).where(SponsorCharge.relay_transaction_id == job_id)
    return (await session.execute(statement)).scalar_one()


async def customer_days(session: AsyncSession, sponsor_id: str) -> list[SponsorCustomerDay]:
    statement = select(SponsorCustomerDay).where(SponsorCustomerDay.sponsor_id == sponsor_id)
    return list((await session.execute(statement)).scalars())


async def until_another_session_waits_for_a_lock(
    services: Services, *, unless_done: asyncio.Task | None = None
) -> None:
    """Until a statement of another session waits for a row lock (PostgreSQL), or the task
    ``unless_done`` has ended; on SQLite, whose single writer holds the other back before it
    reads anything, a moment."""
    if services.db.is_sqlite:
        await asyncio.sleep(1.0)
        return
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        if unless_done is not None and unless_done.done():
            return
        async with services.db.session() as session:
            waiting = (
                await session.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
            ).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no statement of another session waited for a lock")


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_sponsored_transfer_waiting_for_the_sponsor_reads_the_customers_day_after(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """A customer's second sponsored transfer waits for the sponsor's lock while the worker
    settles their first one (the day total goes down to its real cost). The transfer's
    reservation must be added to the settled day total, not to the one it saw before the lock,
    or the customer's day would count the first transfer at its worst case forever."""
    services = own_stack.services
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    [first] = await queue_transfers(own_stack, [sender], count=1)
    async with services.db.session() as session:
        first_reservation = await reserved_for(session, first.job_id)
    first_cost = first_reservation // 3

    settling = services.db.sessionmaker()
    await settle_charges(settling, {first.job_id: first_cost})  # holds the sponsor's lock
    second_transfer = asyncio.create_task(
        queue_transfer(own_stack, sender, fresh_address(), OVPP // 2)
    )
    await until_another_session_waits_for_a_lock(services)
    await settling.commit()
    await settling.close()
    second = await second_transfer

    async with services.db.session() as session:
        second_reservation = await reserved_for(session, second.job_id)
        [day] = await customer_days(session, sponsor_id)
        sponsor = await session.get_one(Sponsor, sponsor_id)
    expected = first_cost + second_reservation
    assert (day.spent_wei, sponsor.spent_wei, sponsor.period_spent_wei) == (
        expected,
        expected,
        expected,
    )


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_quote_at_a_new_period_does_not_reset_what_a_transfer_reserved_in_it(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """The sponsor's period has ended. A sponsored transfer starts the new one and reserves in
    it while a quote is being made: the quote, which locks nothing, must not write its own
    idea of the new period (spent 0) over the transfer's reservation, or the period cap would
    not count it. SQLite: the transfer holds the database until it commits, so the quote is
    made after. PostgreSQL: the transfer holds no lock until its commit reserves, so the quote
    is made before, and the commit starts the new period."""
    services = own_stack.services
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    fields = {"token": "OVPP", "to": fresh_address(), "amount": "0.5", "feeToken": "STABLECOIN"}
    fee_quote = await gql(own_stack.client, QUOTE, {"input": fields}, token=sender.customer.token)
    async with services.db.session() as session:
        sponsor = await session.get_one(Sponsor, sponsor_id)
        sponsor.period_started_at = sponsor.period_started_at - timedelta(
            seconds=sponsor.period_seconds + 60
        )
        sponsor.period_spent_wei = 12_345  # what the ended period spent
        sponsor.spent_wei = 12_345
        session.add(sponsor)

    transferring, job = await transfer_left_uncommitted(
        own_stack, sender, fields, quote_id=fee_quote["data"]["quoteTransfer"]["id"]
    )
    another_quote = asyncio.create_task(
        gql(
            own_stack.client,
            QUOTE,
            {"input": {**fields, "to": fresh_address()}},
            token=sender.customer.token,
        )
    )
    # Until the quote is made, or waits for the transfer's lock (it did when it wrote the
    # sponsor's row).
    await until_another_session_waits_for_a_lock(services, unless_done=another_quote)
    await transferring.commit()
    await transferring.close()
    assert "errors" not in await another_quote

    async with services.db.session() as session:
        reserved = await reserved_for(session, job.id)
        sponsor = await session.get_one(Sponsor, sponsor_id)
    assert (sponsor.spent_wei, sponsor.period_spent_wei) == (12_345 + reserved, reserved)


@pytest.mark.parametrize("own_stack", ["postgresql"], indirect=True)
async def test_a_transfer_committed_after_another_started_a_new_period_stays_in_the_old_one(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
) -> None:
    """PostgreSQL reserves a transfer when it commits, by its charge's ``created_at``. A
    transfer made just before a period boundary may commit after another transaction has
    started the new period: its charge belongs to the period before, whose total is gone, so
    the new period must not count it either (its settlement, which goes by ``created_at``,
    would never take the reservation back out, and the period cap would refuse too early).
    The funds spent count it, reserved and then settled. (SQLite: the open transfer holds the
    database, so no other transaction can start a period meanwhile.)"""
    services = own_stack.services
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    fields = {"token": "OVPP", "to": fresh_address(), "amount": "0.5", "feeToken": "STABLECOIN"}
    fee_quote = await gql(own_stack.client, QUOTE, {"input": fields}, token=sender.customer.token)
    transferring, job = await transfer_left_uncommitted(
        own_stack, sender, fields, quote_id=fee_quote["data"]["quoteTransfer"]["id"]
    )
    # Another transaction starts a period just after the transfer's charge was made.
    async with services.db.session() as session:
        sponsor = await session.get_one(Sponsor, sponsor_id)
        spent_before = sponsor.spent_wei
        sponsor.period_started_at = utc_now()
        sponsor.period_spent_wei = 0
        session.add(sponsor)

    await commit_transfer(transferring)
    await transferring.close()
    async with services.db.session() as session:
        reserved = await reserved_for(session, job.id)
        sponsor = await session.get_one(Sponsor, sponsor_id)
    assert reserved > 0
    assert (sponsor.spent_wei, sponsor.period_spent_wei) == (spent_before + reserved, 0)

    await work_until_final(own_stack)
    async with services.db.session() as session:
        cost = await reserved_for(session, job.id)
        sponsor = await session.get_one(Sponsor, sponsor_id)
    assert 0 < cost < reserved
    assert (sponsor.spent_wei, sponsor.period_spent_wei) == (spent_before + cost, 0)


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_a_sponsored_transfer_at_midnight_reserves_and_settles_on_the_same_day(
    own_stack: OwnStack,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sponsored transfer reads the customer's day at 23:59:59.999 UTC and reserves at
    00:00:00.001 (the sponsor's lock, the signing and the inserts lie between). Once settled,
    each day must count exactly the real cost of the transfers charged to it: the reservation
    and its settlement go to one day, and a day never starts from another day's total.

    On PostgreSQL the reservation is made by the commit, by the charge's ``created_at``, which
    is the only instant it reads (``reserve`` is not called there, so the clock does not move
    and both charges fall before midnight); the day of a charge committed after midnight is
    the day of its ``created_at`` by construction."""
    services = own_stack.services
    sponsor_id = await sponsor_the_stacks_utility(own_stack)
    sender = await new_sender(own_stack, test_issuer, deployer, contracts)
    await queue_transfers(own_stack, [sender], count=1)
    await work_until_final(own_stack)  # the customer's day (today) holds the first one's cost

    before_midnight = datetime.combine(datetime.now(UTC).date(), time(23, 59, 59, 999_000), UTC)
    clock = {"now": before_midnight}
    for module in (sponsorship_rules, reservation):  # every clock of the sponsorship
        monkeypatch.setattr(module, "utc_now", lambda: clock["now"])
    reserve = reservation.reserve

    async def reserve_after_midnight(*args: object, **kwargs: object) -> None:
        clock["now"] = before_midnight + timedelta(milliseconds=2)
        await reserve(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reservation, "reserve", reserve_after_midnight)
    await queue_transfers(own_stack, [sender], count=1)
    monkeypatch.undo()
    await work_until_final(own_stack)

    async with services.db.session() as session:
        charges = list(
            (
                await session.execute(
                    select(SponsorCharge).where(SponsorCharge.sponsor_id == sponsor_id)
                )
            ).scalars()
        )
        days = await customer_days(session, sponsor_id)
        sponsor = await session.get_one(Sponsor, sponsor_id)
    assert all(charge.settled for charge in charges) and len(charges) == 2
    charged_by_day: dict[str, int] = {}
    for charge in charges:
        day = charge.created_at.date().isoformat()
        charged_by_day[day] = charged_by_day.get(day, 0) + charge.amount_wei
    assert {day.day: day.spent_wei for day in days if day.spent_wei} == charged_by_day
    total = sum(charge.amount_wei for charge in charges)
    assert sum(day.spent_wei for day in days) == total
    assert (sponsor.spent_wei, sponsor.period_spent_wei) == (total, total)
