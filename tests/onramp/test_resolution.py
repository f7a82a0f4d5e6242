"""An operator resolves a card payment's case (`ovpp-wallet onramp resolve`), end to end on
both databases.

Two cases need an operator: a delivered payment flagged for clawback (money went back after its
tokens were sent) and a REFUND_FAILED one (nothing delivered, the refund to the card failed). The
operator's command records who settled it, when and how, beside facts that stay as they are;
`reconcile` then lists it as resolved, neither a clawback nor a mismatch, and the `/metrics`
gauges count only open cases. Money moving again reopens a case that still needs an operator.
Everything is the real thing: the `ovpp-wallet` command run as a process against this session's
database, chain and localstripe, the app over HTTP, its processor and the relayer.

Runs after tests/onramp/test_onramp.py and tests/onramp/test_refund_failures.py (alphabetical
order): the first expects `reconcile` to find no mismatch, the second leaves REFUND_FAILED
payments. The last test here resolves every case still open on this backend, and then
`reconcile` exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import func, or_, select

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.settings import Settings
from devsupport.anvil import LocalChain
from devsupport.local_stripe import LocalStripe
from onramp.models import OnrampPayment, PaymentStatus
from onramp.processor import RunningProcessor
from onramp.resolution import resolve_operator_case
from relayer.runner import RunningRelayer
from tests.conftest import STRIPE_WEBHOOK_SECRET
from tests.support.cli import ovpp_wallet
from tests.support.issuer import TestIssuer
from tests.support.metrics import scrape, value
from tests.support.onramp import (
    FAILURE_EVENTS,
    Live,
    buy,
    fail_refund,
    payment_row,
    serve_env,
    undelivered_and_refunded,
    wait_payment,
    wait_processed,
)
from tests.support.ports import free_port
from tests.support.stripe import signed_event
from tests.support.wallets import Customer, new_customer

OPERATOR = "ops@demo-utility.example"
RESOLVED_LOG = "money moved after an operator resolved its"


@pytest.fixture
def operator_env(
    settings: Settings, kek: str, anvil: LocalChain, tmp_path: Path, trust_restored: None
) -> dict[str, str]:
    """The environment of an operator's `ovpp-wallet` on this session's database and Stripe."""
    return serve_env(settings, kek=kek, anvil=anvil, data_dir=tmp_path, port=free_port())


async def resolve(
    env: dict[str, str], payment: str, *options: str, note: str | None
) -> subprocess.CompletedProcess[str]:
    arguments = ["onramp", "resolve", payment, "--operator", OPERATOR, *options]
    if note is not None:
        arguments += ["--note", note]
    return await asyncio.to_thread(ovpp_wallet, env, *arguments)


async def reconcile_cli(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`onramp reconcile`; its exit code says whether it printed a mismatch (other tests may
    leave some on this backend: the last test here settles them)."""
    result = await asyncio.to_thread(ovpp_wallet, env, "onramp", "reconcile")
    assert result.returncode == (1 if "MISMATCH " in result.stdout else 0), (
        result.stdout + result.stderr
    )
    return result


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


async def open_cases(services: Services) -> tuple[int, int]:
    """(clawbacks, REFUND_FAILED payments) of the database that no operator resolved."""
    unresolved = OnrampPayment.operator_resolved_at.is_(None)
    async with services.db.session() as session:
        clawbacks = (
            await session.execute(
                select(func.count()).where(OnrampPayment.clawback_required.is_(True), unresolved)
            )
        ).scalar_one()
        refunds_failed = (
            await session.execute(
                select(func.count()).where(
                    OnrampPayment.status == PaymentStatus.REFUND_FAILED.value, unresolved
                )
            )
        ).scalar_one()
    return clawbacks, refunds_failed


async def gauges(client: httpx.AsyncClient, services: Services) -> tuple[int, int]:
    """`/metrics`' clawbacks and failed refunds, which are the database's open cases."""
    samples = await scrape(client)
    shown = (
        value(samples, "ovpp_onramp_clawbacks_required"),
        value(samples, "ovpp_onramp_refunds_failed"),
    )
    assert shown == await open_cases(services)
    return int(shown[0] or 0), int(shown[1] or 0)


async def post_event(live: Live, services: Services, event_type: str, obj: dict[str, Any]) -> None:
    """An event localstripe never sends (charge.refunded, charge.dispute.created), signed as
    Stripe signs it, posted to the app and processed."""
    body, signature = signed_event(STRIPE_WEBHOOK_SECRET, event_type=event_type, obj=obj)
    assert (await live.post(body, signature)).status_code == 200
    await wait_processed(services, [json.loads(body)["id"]])


async def row_once(
    services: Services, payment_id: str, condition: Callable[[OnrampPayment], bool]
) -> OnrampPayment:
    deadline = time.monotonic() + 20
    while True:
        row = await payment_row(services, payment_id)
        if condition(row):
            return row
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.1)


def resolution_logs(caplog: pytest.LogCaptureFixture, payment_intent_id: str) -> list[str]:
    """What the log said of money moving on this payment after an operator resolved it."""
    messages = [record.getMessage() for record in caplog.records]
    return [m for m in messages if payment_intent_id in m and RESOLVED_LOG in m]


def resolution_of(row: OnrampPayment) -> tuple[Any, ...]:
    return (row.operator_resolved_at is not None, row.operator_resolved_by, row.operator_note)


async def refund_failed(
    client: httpx.AsyncClient,
    live: Live,
    relayer: RunningRelayer,
    services: Services,
    localstripe: LocalStripe,
    customer: Customer,
) -> tuple[dict[str, Any], int]:
    """A payment whose delivery failed, refunded, and whose refund failed: REFUND_FAILED. Its
    PaymentIntent's webhooks reach the app again afterwards. Returns it and what was charged."""
    payment = await undelivered_and_refunded(
        client, live, relayer, services, customer, token_amount="15"
    )
    pi = payment["paymentIntentId"]
    [refund] = await live.stripe.refunds(pi)
    await fail_refund(localstripe, refund["id"], "expired_or_canceled_card")
    events = [await live.tap.wait_for(kind, pi) for kind in FAILURE_EVENTS]
    live.tap.held.discard(pi)
    for event in events:
        assert (await live.deliver(event)).status_code == 200
    await wait_processed(services, [event.event_id for event in events])
    await wait_payment(client, customer, payment["id"], "REFUND_FAILED")
    return payment, refund["amount"]


# -- tests ---------------------------------------------------------------------------------------


async def test_a_refund_failed_payment_an_operator_resolves_leaves_reconcile_and_metrics(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    localstripe: LocalStripe,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    operator_env: dict[str, str],
) -> None:
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment, charged = await refund_failed(client, live, relayer, services, localstripe, customer)
    pi, payment_id = payment["paymentIntentId"], payment["id"]
    before = await payment_row(services, payment_id)

    listed = await reconcile_cli(operator_env)
    assert f"MISMATCH {pi} (payment {payment_id}): paid, nothing delivered" in listed.stdout
    clawbacks, refunds_failed = await gauges(client, services)
    assert refunds_failed >= 1

    # Refused, recording nothing: no note, an empty or blank one, one too long, a payment
    # nobody knows.
    missing = await resolve(operator_env, pi, note=None)
    assert missing.returncode == 2 and "Missing option '--note'" in missing.stderr, missing.stderr
    refused(await resolve(operator_env, pi, note=""), "the note is empty")
    refused(await resolve(operator_env, pi, note=" \n "), "the note is empty")
    refused(await resolve(operator_env, pi, note="x" * 501), "at most 500")
    refused(await resolve(operator_env, pi, note="bell\x07"), "control character")
    refused(
        await resolve(operator_env, "pi_nobody_knows", note="paid back"),
        "no card payment has the id or PaymentIntent id 'pi_nobody_knows'",
    )
    assert resolution_of(await payment_row(services, payment_id)) == (False, None, None)

    # Resolved by its PaymentIntent id: recorded beside the facts, which stay as they were.
    note = "returned by bank transfer, reference BT-2026-0042"
    resolved = await resolve(operator_env, pi, note=note)
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert (
        f"resolved  {payment_id} ({pi}): refund failed; REFUND_FAILED, 0 USD back, "
        f"{payment['fiatAmount']} USD of refunds failed, disputed: no" in resolved.stdout
    ), resolved.stdout
    assert f"by {OPERATOR} at " in resolved.stdout and resolved.stdout.rstrip().endswith(note)
    row = await payment_row(services, payment_id)
    assert resolution_of(row) == (True, OPERATOR, note)
    assert (row.status, row.refunded_amount, row.refund_failed_amount, row.error) == (
        "REFUND_FAILED",
        0,
        charged,
        before.error,
    )
    assert row.clawback_required is False

    # Once only: the second time, by its payment id, shows when and how it was resolved.
    again = await resolve(operator_env, payment_id, note="paid back twice?")
    refused(again, f"was resolved {row.operator_resolved_at:%Y-%m-%d %H:%M:%S} UTC by {OPERATOR}")
    assert note in again.stderr, again.stderr
    assert (await payment_row(services, payment_id)).operator_note == note

    # reconcile lists it as resolved and no longer as a mismatch; /metrics no longer counts it.
    settled = await reconcile_cli(operator_env)
    assert f"MISMATCH {pi} " not in settled.stdout, settled.stdout
    assert f"resolved  {pi}: refund failed, settled by {OPERATOR} at " in settled.stdout
    assert "repaired  " not in settled.stdout  # reading Stripe again moved nothing
    assert await gauges(client, services) == (clawbacks, refunds_failed - 1)
    assert resolution_of(await payment_row(services, payment_id)) == (True, OPERATOR, note)


async def test_a_clawback_resolved_then_disputed_is_open_again(
    client,
    live: Live,
    processor: RunningProcessor,
    services: Services,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    operator_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="onramp.events")
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment = await buy(client, customer, token_amount="10")
    pi, payment_id = payment["paymentIntentId"], payment["id"]
    await live.stripe.pay(pi)
    await wait_payment(client, customer, payment_id, "DELIVERED")

    # Delivered, nothing went back: there is nothing for an operator to resolve.
    refused(
        await resolve(operator_env, pi, note="nothing to do"),
        f"payment {payment_id} ({pi}) needs no operator: it is DELIVERED",
    )

    # Refunded after delivery: a clawback, listed and counted.
    await live.stripe.refund(pi)
    intent = await live.stripe.payment_intent(pi)
    await post_event(live, services, "charge.refunded", intent["latest_charge"])
    await wait_payment(client, customer, payment_id, "DELIVERED")
    assert (await payment_row(services, payment_id)).clawback_required is True
    listed = await reconcile_cli(operator_env)
    assert f"clawback  {pi}: refunded or disputed after delivery" in listed.stdout
    clawbacks, refunds_failed = await gauges(client, services)
    assert clawbacks >= 1

    # Resolved by the payment's id (the note on one line); the flag and the amounts stay.
    resolved = await resolve(operator_env, payment_id, note="10 OVPP clawed back\n  (ticket 7)")
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    assert f"resolved  {payment_id} ({pi}): clawback; DELIVERED, " in resolved.stdout
    row = await payment_row(services, payment_id)
    assert resolution_of(row) == (True, OPERATOR, "10 OVPP clawed back (ticket 7)")
    assert (row.status, row.clawback_required, row.refunded_amount, row.disputed) == (
        "DELIVERED",
        True,
        intent["amount"],
        False,
    )
    settled = await reconcile_cli(operator_env)
    assert f"clawback  {pi}" not in settled.stdout, settled.stdout
    assert f"resolved  {pi}: clawback, settled by {OPERATOR} at " in settled.stdout
    assert await gauges(client, services) == (clawbacks - 1, refunds_failed)

    # Stripe saying the same again (another event of the refund) moves no money: still resolved.
    charge = (await live.stripe.payment_intent(pi))["latest_charge"]
    await post_event(live, services, "charge.refunded", charge)
    assert resolution_of(await payment_row(services, payment_id))[0] is True

    # The customer's bank disputes the charge too: new money back after the resolution, so the
    # case is open again (and said in the log, with the resolution it cleared).
    dispute = {
        "id": f"dp_{uuid.uuid4().hex[:14]}",
        "object": "dispute",
        "amount": intent["amount"],
        "currency": "usd",
        "charge": charge["id"],
        "payment_intent": pi,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    await post_event(live, services, "charge.dispute.created", dispute)
    row = await payment_row(services, payment_id)
    assert resolution_of(row) == (False, None, None)
    assert (row.status, row.clawback_required, row.disputed) == ("DELIVERED", True, True)
    [reopened] = resolution_logs(caplog, pi)
    assert any(r.levelno == logging.WARNING and r.getMessage() == reopened for r in caplog.records)
    assert "10 OVPP clawed back (ticket 7)" in reopened, reopened
    assert "the case (clawback) is open again" in reopened, reopened
    reopened_listing = await reconcile_cli(operator_env)
    assert f"clawback  {pi}: refunded or disputed after delivery" in reopened_listing.stdout
    assert f"resolved  {pi}" not in reopened_listing.stdout
    assert await gauges(client, services) == (clawbacks, refunds_failed)

    # The operator resolves it again, knowing of the dispute.
    again = await resolve(operator_env, pi, note="dispute accepted, loss written off")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "disputed: yes" in again.stdout, again.stdout
    assert await gauges(client, services) == (clawbacks - 1, refunds_failed)


async def test_money_moving_after_a_refund_failed_resolution_reopens_it_or_keeps_it_as_record(
    client,
    live: Live,
    processor: RunningProcessor,
    relayer: RunningRelayer,
    services: Services,
    localstripe: LocalStripe,
    test_issuer: TestIssuer,
    deployer: Deployer,
    contracts: AddressBook,
    operator_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="onramp.events")
    customer = await new_customer(client, test_issuer, deployer, contracts)
    payment, charged = await refund_failed(client, live, relayer, services, localstripe, customer)
    pi, payment_id = payment["paymentIntentId"], payment["id"]
    resolved = await resolve(operator_env, pi, note="cheque 1187 sent")
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    clawbacks, refunds_failed = await gauges(client, services)

    # Someone refunds it in Stripe after all, and that refund fails too: more money failed to
    # go back than the operator knew of, and the payment still needs one: open again.
    await live.stripe.refund(pi)
    second = next(r for r in await live.stripe.refunds(pi) if r["status"] != "failed")
    await fail_refund(localstripe, second["id"], "lost_or_stolen_card")
    row = await row_once(services, payment_id, lambda r: r.refund_failed_amount == 2 * charged)
    assert row.status == "REFUND_FAILED" and resolution_of(row) == (False, None, None)
    [reopened] = resolution_logs(caplog, pi)
    assert "cheque 1187 sent" in reopened, reopened
    assert "the case (refund failed) is open again" in reopened, reopened
    listed = await reconcile_cli(operator_env)
    assert f"MISMATCH {pi} (payment {payment_id}): paid, nothing delivered" in listed.stdout
    assert await gauges(client, services) == (clawbacks, refunds_failed + 1)

    # Resolved again; then a refund the card takes gives the whole charge back: REFUNDED needs
    # no operator, and the resolution stays as the record (the log says the customer may now
    # have been paid twice).
    assert (await resolve(operator_env, pi, note="cheque 1188 sent")).returncode == 0
    caplog.clear()
    await live.stripe.refund(pi)
    await post_event(
        live, services, "charge.refunded", (await live.stripe.payment_intent(pi))["latest_charge"]
    )
    row = await row_once(services, payment_id, lambda r: r.status == "REFUNDED")
    assert (row.refunded_amount, row.refund_failed_amount) == (charged, 2 * charged)
    assert resolution_of(row) == (True, OPERATOR, "cheque 1188 sent")
    [kept] = resolution_logs(caplog, pi)
    assert "needs no operator now, so the resolution is kept" in kept, kept
    assert "returned twice" in kept
    settled = await reconcile_cli(operator_env)
    assert f"MISMATCH {pi} " not in settled.stdout and f"resolved  {pi}" not in settled.stdout
    assert await gauges(client, services) == (clawbacks, refunds_failed)
    refused(
        await resolve(operator_env, payment_id, note="again"),
        f"needs no operator: it is REFUNDED, neither flagged for clawback nor REFUND_FAILED; an "
        f"operator had resolved {row.operator_resolved_at:%Y-%m-%d %H:%M:%S} UTC by {OPERATOR}: "
        "cheque 1188 sent",
    )


async def test_with_every_case_resolved_reconcile_finds_no_mismatch_and_the_gauges_are_zero(
    client,
    services: Services,
    operator_env: dict[str, str],
) -> None:
    """Runs last: the operator settles every case still open on this backend (the tests above,
    tests/onramp/test_refund_failures.py), and nothing is left to page anyone about."""
    async with services.db.session() as session:
        open_ids = list(
            (
                await session.execute(
                    select(OnrampPayment.id).where(
                        OnrampPayment.operator_resolved_at.is_(None),
                        or_(
                            OnrampPayment.clawback_required.is_(True),
                            OnrampPayment.status == PaymentStatus.REFUND_FAILED.value,
                        ),
                    )
                )
            ).scalars()
        )
    for payment_id in open_ids:
        async with services.db.session() as session:
            await resolve_operator_case(
                session, payment_reference=payment_id, note="settled by the test", operator=OPERATOR
            )
    assert await gauges(client, services) == (0, 0)
    clean = await asyncio.to_thread(ovpp_wallet, operator_env, "onramp", "reconcile")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "MISMATCH" not in clean.stdout and "clawback  " not in clean.stdout, clean.stdout
    assert clean.stdout.strip().splitlines()[-1].endswith(", 0 mismatches")
