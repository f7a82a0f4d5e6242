"""Reconciliation of Stripe against the deliveries: every succeeded PaymentIntent of the onramp
has exactly one confirmed delivery of the quoted amount to the buyer's wallet, unless the
money went back before delivery (then it has none); and nothing was delivered for a payment
Stripe does not show as succeeded. ``ovpp-wallet onramp reconcile`` prints what does not hold.

A refund can fail days after Stripe accepted it, and the webhook saying so can be lost: every
payment whose money (partly) went back, or whose refund failed, has its refunds read again and
applied the way the processor applies an event (``events.apply_intent_state``: guarded,
idempotent), so a refund that failed unseen is caught here. A payment left with neither its
tokens nor its money (REFUND_FAILED) is a mismatch until an operator has settled it.

An operator's resolution (``ovpp-wallet onramp resolve``) of a clawback or a REFUND_FAILED
payment takes it out of the clawbacks and the mismatches; it is listed apart, as resolved. A
resolution never hides a delivery problem (a payment whose money went back, yet tokens were
sent, stays a mismatch), and money moving again reopens the case (``events.apply_intent_state``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from onramp import repository
from onramp.delivery import delivery_key
from onramp.deps import OnrampServices
from onramp.events import apply_intent_state
from onramp.models import OnrampPayment, OperatorCase, PaymentStatus, operator_case
from onramp.stripe_gateway import IntentState, require_gateway
from onramp.treasury import treasury_account
from relayer.models import OPEN_STATUSES, RelayStatus, RelayTransaction

IN_FLIGHT = (*OPEN_STATUSES, RelayStatus.MINED)


@dataclass(frozen=True)
class Mismatch:
    payment_intent_id: str
    payment_id: str | None
    problem: str


@dataclass(frozen=True)
class ResolvedCase:
    payment_intent_id: str
    case: OperatorCase
    resolved_by: str
    resolved_at: datetime


@dataclass
class Reconciliation:
    succeeded_checked: int = 0
    delivered: int = 0
    in_flight: list[str] = field(default_factory=list)  # PaymentIntent ids
    clawbacks: list[str] = field(default_factory=list)  # PaymentIntent ids, not resolved
    resolved: list[ResolvedCase] = field(default_factory=list)  # settled by an operator
    mismatches: list[Mismatch] = field(default_factory=list)
    refunds_rechecked: int = 0
    repaired: list[str] = field(default_factory=list)  # PaymentIntent ids moved by a re-read


async def reconcile(services: OnrampServices, *, since: datetime | None = None) -> Reconciliation:
    """Stripe against the deliveries; with ``since``, only PaymentIntents and payments created
    then or later (Stripe lists newest first, so an old account is not read to the end)."""
    gateway = require_gateway(services.stripe)
    treasury = await treasury_account(services)
    intents: dict[str, IntentState] = {}
    created_since = int(since.timestamp()) if since is not None else None
    async for intent in gateway.payment_intents(created_since=created_since):
        if "ovpp_payment_id" in intent.metadata:  # ours: the onramp made it
            intents[intent.id] = intent
    report = Reconciliation()
    await _recheck_refunds(services, intents, since=since, report=report)
    async with services.db.session() as session:
        payments = {
            payment.stripe_payment_intent_id: payment
            for payment in await repository.all_payments(session, since=since)
        }
        for intent in intents.values():
            if not intent.succeeded:
                continue
            report.succeeded_checked += 1
            payment = payments.get(intent.id)
            jobs = await repository.delivery_jobs(
                session,
                wallet_id=treasury.wallet.id,
                idempotency_key=delivery_key(intent.id),
            )
            problem = _delivery_problem(intent, payment, jobs, report)
            if problem is not None:
                report.mismatches.append(
                    Mismatch(intent.id, payment.id if payment else None, problem)
                )
        for pi, payment in payments.items():
            if payment.status not in (PaymentStatus.DELIVERING, PaymentStatus.DELIVERED):
                continue
            intent = intents.get(pi)
            if intent is None or not intent.succeeded:
                report.mismatches.append(
                    Mismatch(
                        pi,
                        payment.id,
                        f"tokens sent, but Stripe shows the payment as "
                        f"{intent.status if intent else 'unknown'}",
                    )
                )
    return report


async def _recheck_refunds(
    services: OnrampServices,
    intents: dict[str, IntentState],
    *,
    since: datetime | None,
    report: Reconciliation,
) -> None:
    """Read again, refund by refund, every succeeded payment whose money went back in part or
    whose refund failed, and apply what Stripe says (Stripe is read outside any transaction)."""
    gateway = require_gateway(services.stripe)
    async with services.db.session() as session:
        payments = [
            (payment.id, payment.stripe_payment_intent_id)
            for payment in await repository.all_payments(session, since=since)
            if payment.refunded_amount > 0 or payment.status == PaymentStatus.REFUND_FAILED
        ]
    for payment_id, payment_intent_id in payments:
        intent = intents.get(payment_intent_id)
        if intent is None or not intent.succeeded:
            continue
        state = await gateway.payment_intent(payment_intent_id)
        async with services.db.session() as session:
            moved = await apply_intent_state(session, payment_id=payment_id, state=state)
        report.refunds_rechecked += 1
        if moved is not None:
            report.repaired.append(payment_intent_id)


def _delivery_problem(
    intent: IntentState,
    payment: OnrampPayment | None,
    jobs: list[RelayTransaction],
    report: Reconciliation,
) -> str | None:
    """What is wrong with one succeeded PaymentIntent's deliveries, or ``None``."""
    if payment is None:
        return (
            f"succeeded in Stripe but no onramp payment here (metadata names "
            f"{intent.metadata.get('ovpp_payment_id')}); {len(jobs)} deliveries"
        )
    case = operator_case(status=payment.status, clawback_required=payment.clawback_required)
    resolved = False
    if case is not None and payment.operator_resolved_at is not None:
        resolved = True
        report.resolved.append(
            ResolvedCase(
                intent.id, case, payment.operator_resolved_by or "", payment.operator_resolved_at
            )
        )
    elif payment.clawback_required:
        report.clawbacks.append(intent.id)
    if payment.status in (
        PaymentStatus.REFUNDED,
        PaymentStatus.DISPUTED,
        PaymentStatus.REFUND_FAILED,
    ):
        # A failed delivery (FAILED: it never executed) is refunded afterwards; any other
        # delivery of a payment whose money went back is a problem.
        sent = [job for job in jobs if job.status != RelayStatus.FAILED]
        if sent:
            return f"{payment.status.lower()} before delivery, yet {len(sent)} deliveries"
        if payment.status == PaymentStatus.REFUND_FAILED and not resolved:
            return (
                "paid, nothing delivered, and the refund failed: the money is back in the "
                f"Stripe balance, return it to the customer another way ({payment.error})"
            )
        return None
    if len(jobs) > 1:
        return f"{len(jobs)} deliveries for one payment"
    if not jobs:
        return f"paid but not delivered (payment status {payment.status})"
    job = jobs[0]
    if job.status in IN_FLIGHT:
        report.in_flight.append(intent.id)
        return None
    if job.status != RelayStatus.CONFIRMED:
        return f"the delivery {job.id} is {job.status}: {job.error or 'no error recorded'}"
    if (
        job.amount != payment.token_amount
        or job.token != payment.token
        or job.to_address.lower() != payment.wallet_address.lower()
    ):
        return (
            f"the delivery {job.id} sent {job.amount} {job.token} to {job.to_address}; the "
            f"payment bought {payment.token_amount} {payment.token} for {payment.wallet_address}"
        )
    report.delivered += 1
    return None
