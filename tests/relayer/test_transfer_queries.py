"""What a transfer asks the database does not grow with its wallet's history (issue 17): the
same statements and the same rows for a wallet with no past transfers as for one with 200, the
daily limit answered from running totals (``RelayTransaction.running_total``) and index probes
(``relayer.repository.transfer_context``), never by loading the wallet's jobs. Through the API,
per database backend; the counts are of the ``transfer`` mutation alone. (A failed job of the
last day is still read, one row each: it must come off the running total, and SQLite cannot
sum amounts exactly.)"""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from sqlmodel import select

from api.container import Services
from relayer.models import WalletPolicy
from tests.support.history import seed_transfers
from tests.support.query_count import Sent, counting_statements
from tests.support.transfers import quote, send
from tests.support.wallets import Customer, FundedCustomer, fresh_address, wait_for_status
from wallet.models import Wallet

OVPP = 10**18
USD = 10**6
MILLI = OVPP // 1000
# A transfer with its fee in the stablecoin: the quote with the wallet's policy (1 row), the
# forwarder nonces (1), what the wallet's jobs tell it (one statement, 1 row: the summary, plus
# one per open job or failed one of the last day), its onramp holds (none), the holds moved
# to it by other wallets' transfers (none), the job.
STATEMENT_CEILING = 6
ROW_CEILING = 3


async def counted_transfer(
    client: httpx.AsyncClient, services: Services, customer: Customer, *, amount: str
) -> tuple[dict, Sent]:
    """Quote (not counted), then the ``transfer`` mutation, counted."""
    fields = {"token": "OVPP", "to": fresh_address(), "amount": amount, "feeToken": "STABLECOIN"}
    quote_id = (await quote(client, customer.token, **fields))["id"]
    with counting_statements(services.db) as sent:
        result = await send(
            client, customer.token, quote_id=quote_id, key=f"q-{uuid.uuid4()}", **fields
        )
    return result, sent


async def limit_daily_ovpp(services: Services, address: str, limit: int) -> None:
    async with services.db.session() as session:
        wallet = (await session.execute(select(Wallet).where(Wallet.address == address))).one()[0]
        session.add(WalletPolicy(wallet_id=wallet.id, token="OVPP", daily_limit=limit))


async def seed_two_days(services: Services, customer: Customer, *, failed_every: int = 0) -> int:
    """100 transfers of a thousandth older than a day, then 100 within it (every
    ``failed_every``-th failed); returns what the last day's sent."""
    await seed_transfers(
        services.db,
        wallet_address=customer.address,
        count=100,
        amount=MILLI,
        between=(timedelta(hours=47), timedelta(hours=25)),
    )
    return await seed_transfers(
        services.db,
        wallet_address=customer.address,
        count=100,
        amount=MILLI,
        failed_every=failed_every,
    )


async def test_a_transfer_reads_the_same_statements_and_rows_whatever_the_history(
    client: httpx.AsyncClient,
    relayer: object,
    services: Services,
    funded_customer: FundedCustomer,
) -> None:
    fresh = await funded_customer(ovpp=OVPP, stablecoin=10 * USD)
    busy = await funded_customer(ovpp=OVPP, stablecoin=10 * USD)
    await seed_two_days(services, busy)

    first, without_history = await counted_transfer(client, services, fresh, amount="0.005")
    second, with_history = await counted_transfer(client, services, busy, amount="0.005")
    assert first["__typename"] == second["__typename"] == "Transaction", (first, second)

    assert len(with_history) == len(without_history), (
        without_history.statements,
        with_history.statements,
    )
    assert with_history.rows == without_history.rows, (without_history.rows, with_history.rows)
    assert len(with_history) <= STATEMENT_CEILING, with_history.statements
    assert with_history.rows_read <= ROW_CEILING, with_history.rows
    for customer, job in ((fresh, first), (busy, second)):
        final = await wait_for_status(client, customer.token, job["id"])
        assert final["status"] == "CONFIRMED", final


async def test_the_daily_limit_from_running_totals_counts_the_last_day_less_its_failures(
    client: httpx.AsyncClient,
    relayer: object,
    services: Services,
    funded_customer: FundedCustomer,
) -> None:
    """90 of the last day's 100 seeded transfers did not fail; with a limit of 100 thousandths,
    5 more pass, then 10 more would not, and 5 more exactly reach it."""
    customer = await funded_customer(ovpp=OVPP, stablecoin=10 * USD)
    assert await seed_two_days(services, customer, failed_every=10) == 90 * MILLI
    await limit_daily_ovpp(services, customer.address, 100 * MILLI)

    accepted, _ = await counted_transfer(client, services, customer, amount="0.005")
    assert accepted["__typename"] == "Transaction", accepted
    refused, _ = await counted_transfer(client, services, customer, amount="0.01")
    assert refused["__typename"] == "PolicyViolation", refused
    assert refused["rule"] == "DAILY_LIMIT"
    assert "(0.095 sent in the last 24 hours)" in refused["message"], refused["message"]
    exact, _ = await counted_transfer(client, services, customer, amount="0.005")
    assert exact["__typename"] == "Transaction", exact
    for job in (accepted, exact):
        final = await wait_for_status(client, customer.token, job["id"])
        assert final["status"] == "CONFIRMED", final
