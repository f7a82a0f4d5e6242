"""Enrollment paid by card: the fee is bought through the onramp, then connected automatically.

``enroll_by_card`` runs the routing like any enrollment (nothing is charged when a check
fails), then opens a card payment for exactly the OVPP the enrollment needs (the connection
fee, plus the gas fee unless the utility sponsors gas) and returns the enrollment in
FEE_PENDING with the payment's client secret. Once the payment has succeeded and the OVPP has
reached the customer's wallet, the onramp processor calls ``connect_paid_enrollment``: the same
relayed call as a WALLET enrollment (approve + connect + gas fee, all or nothing), signed by the
customer's custodial wallet. The enrollment then goes CONNECTING → ACTIVE with no further step
from the customer. Money back before the OVPP was sent (refund, dispute, cancel), or a refund
of it that failed, fails the enrollment; nothing is ever connected without a paid fee. An
enrollment that fails after the OVPP arrived leaves it in the wallet (the payment is not
refunded) and its error says so.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import TokenKind
from core.db import insert_if_absent, utc_now
from core.errors import InvalidInput
from core.idempotency import (
    CARD_ENROLLMENT_PAYMENT_KEY_PREFIX,
    ENROLL_KEY_PREFIX,
    request_fingerprint,
    require_idempotency_key,
)
from identity.models import Customer
from identity.service import CustomerAccount
from onramp import payments as onramp
from onramp import repository as onramp_repository
from onramp.models import OnrampPayment, PaymentPurpose, PaymentStatus
from onramp.quotes import quote_tokens
from onramp.stripe_gateway import require_gateway
from programs import service
from programs.deps import ProgramServices
from programs.errors import CardPaymentUnavailable, NotEligible
from programs.models import ERROR_LENGTH, Enrollment, EnrollmentStatus
from relayer.calls import Display, GasPayment, enqueue_calls, required_nonces, take_forwarder_nonces
from relayer.errors import SponsorRefused
from relayer.keys import relayer_key_for
from relayer.models import JobKind
from wallet.models import Wallet

_ENROLLMENT_NAMESPACE = uuid.UUID("0b8e2f3c-6a47-4d0e-9f1e-5d2c7a9b4e61")
GIVEN_UP = {
    PaymentStatus.CANCELED.value: "the card payment was canceled",
    PaymentStatus.REFUNDED.value: "the card payment was refunded before the fee was paid",
    PaymentStatus.DISPUTED.value: "the card payment was disputed before the fee was paid",
    PaymentStatus.DELIVERY_FAILED.value: (
        "the OVPP bought for the fee could not be delivered; the card payment is refunded"
    ),
    # Nothing was delivered, and the refund to the card failed after Stripe accepted it.
    PaymentStatus.REFUND_FAILED.value: (
        "the OVPP bought for the fee was not delivered and the refund to the card failed; the "
        "utility's support will return the money another way"
    ),
}

UNDELIVERED_AND_REFUNDED = (
    "the OVPP bought for the fee could not be delivered; the card payment was refunded"
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardEnrollment:
    enrollment: Enrollment
    client_secret: str | None  # for the app's payment sheet while the fee awaits payment


def _payment_key(idempotency_key: str) -> str:
    return f"{CARD_ENROLLMENT_PAYMENT_KEY_PREFIX}{idempotency_key}"


async def enroll_by_card(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    device_row_id: str,
    program_row_id: str,
    protocol: str,
    idempotency_key: str,
) -> CardEnrollment:
    """A FEE_PENDING enrollment and its card payment, or the ones this key already made."""
    require_idempotency_key(idempotency_key, limit=200)
    if services.stripe is None:
        raise CardPaymentUnavailable(
            "paying the connection fee by card is not configured here; use WALLET"
        )
    fingerprint = request_fingerprint(device_row_id, program_row_id, protocol, "CARD")
    existing = await _enrollment_by_key(session, account.customer.id, idempotency_key)
    if existing is not None:
        return await _replay(services, session, existing, fingerprint=fingerprint)

    check = await service.check_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
        protocol=protocol,
        payment_method="CARD",
    )
    routing = check.routing
    if not routing.ready:
        raise NotEligible(
            "the device cannot join this program: " + "; ".join(c.reason for c in routing.failing),
            failing=routing.failing,
        )
    ovpp = service.ovpp_token(services)
    quote = await quote_tokens(
        session,
        services=services,
        wallet_id=account.wallet.id,
        token=ovpp,
        amount=check.fee + check.gas_fee,
    )
    enrollment_id = str(
        uuid.uuid5(_ENROLLMENT_NAMESPACE, f"{account.customer.id}\x1f{idempotency_key}")
    )
    payment_key = _payment_key(idempotency_key)
    payment_id = onramp.payment_id_for(account.customer.id, payment_key)
    # Stripe first (no lock held during the call), then the rows; a concurrent twin of this
    # request loses in SQL and gets the winner's enrollment.
    intent = await onramp.create_intent(
        services,
        payment_id=payment_id,
        quote=quote,
        wallet_address=account.wallet.address,
        purpose=PaymentPurpose.ENROLLMENT_FEE,
        enrollment_id=enrollment_id,
    )
    now = utc_now()
    inserted = await insert_if_absent(
        session,
        Enrollment.__table__,
        {
            "id": enrollment_id,
            "customer_id": account.customer.id,
            "device_row_id": device_row_id,
            "program_row_id": check.program.id,
            "tenant_id": check.program.tenant_id,
            "protocol": protocol,
            "payment_method": "CARD",
            "status": EnrollmentStatus.FEE_PENDING.value,
            "idempotency_key": idempotency_key,
            "request_fingerprint": fingerprint,
            "fee_amount": check.fee,
            "routing": service._routing_json(routing),
            "created_at": now,
            "updated_at": now,
        },
    )
    if not inserted:
        await require_gateway(services.stripe).cancel(intent.id)
        winner = await _enrollment_by_key(session, account.customer.id, idempotency_key)
        assert winner is not None
        return await _replay(services, session, winner, fingerprint=fingerprint)
    opened = await onramp.insert_payment(
        session,
        services=services,
        account=account,
        payment_id=payment_id,
        quote=quote,
        intent=intent,
        idempotency_key=payment_key,
        request_fingerprint=fingerprint,
        purpose=PaymentPurpose.ENROLLMENT_FEE,
        enrollment_id=enrollment_id,
    )
    enrollment = await session.get(Enrollment, enrollment_id)
    assert enrollment is not None
    return CardEnrollment(enrollment, opened.client_secret)


async def _enrollment_by_key(
    session: AsyncSession, customer_id: str, idempotency_key: str
) -> Enrollment | None:
    return (
        await session.execute(
            select(Enrollment).where(
                Enrollment.customer_id == customer_id,
                Enrollment.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()


async def _replay(
    services: ProgramServices, session: AsyncSession, enrollment: Enrollment, *, fingerprint: str
) -> CardEnrollment:
    if enrollment.request_fingerprint != fingerprint:
        raise InvalidInput(
            "this idempotency key was already used for another enrollment",
            field="idempotencyKey",
        )
    payment = await onramp_repository.payment_of_enrollment(session, enrollment.id)
    secret = None
    if payment is not None and enrollment.status == EnrollmentStatus.FEE_PENDING:
        secret = (
            await onramp.replay(services, payment, request_fingerprint=payment.request_fingerprint)
        ).client_secret
    return CardEnrollment(enrollment, secret)


# -- after the payment ---------------------------------------------------------------------------


async def _card_enrollments_to_advance(
    session: AsyncSession, *, limit: int = 100
) -> list[tuple[str, str, str]]:
    """(enrollment id, enrollment status, payment status) of card-paid enrollments the
    processor still has to move: fee paid and delivered, payment given up, or connecting."""
    statement = (
        select(Enrollment.id, Enrollment.status, OnrampPayment.status)
        .join(OnrampPayment, OnrampPayment.enrollment_id == Enrollment.id)
        .where(
            or_(
                and_(
                    Enrollment.status == EnrollmentStatus.FEE_PENDING,
                    OnrampPayment.status.in_(
                        (
                            PaymentStatus.DELIVERED,
                            PaymentStatus.DELIVERY_FAILED,
                            PaymentStatus.CANCELED,
                            PaymentStatus.REFUNDED,
                            PaymentStatus.DISPUTED,
                            PaymentStatus.REFUND_FAILED,
                        )
                    ),
                ),
                Enrollment.status == EnrollmentStatus.CONNECTING,
            )
        )
        .limit(limit)
    )
    return [tuple(row) for row in (await session.execute(statement)).all()]  # type: ignore[misc]


async def advance_card_enrollments(services: ProgramServices) -> bool:
    """The onramp processor's follower: move every card-paid enrollment that can move.
    Returns whether any did."""
    async with services.db.session() as session:
        rows = await _card_enrollments_to_advance(session)
    moved = False
    for enrollment_id, _status, _payment_status in rows:
        try:
            moved = bool(await advance(services, enrollment_id)) or moved
        except Exception:
            logger.exception("card enrollment %s did not advance", enrollment_id)
    return moved


async def advance(services: ProgramServices, enrollment_id: str) -> str | None:
    """One step for a card-paid enrollment, in its own transaction: connect it once its OVPP
    arrived, fail it when the payment was given up, or follow its connection to ACTIVE.
    Returns the new status when it changed."""
    async with services.db.session() as session:
        enrollment = await session.get(Enrollment, enrollment_id)
        if enrollment is None:
            return None
        if enrollment.status == EnrollmentStatus.CONNECTING:
            before = enrollment.status
            enrollment = await service.refresh_status(
                session, services=services, enrollment=enrollment
            )
            return enrollment.status if enrollment.status != before else None
        if enrollment.status != EnrollmentStatus.FEE_PENDING:
            return None
        payment = await onramp_repository.payment_of_enrollment(session, enrollment.id)
        if payment is None:
            return None
        if payment.status == PaymentStatus.REFUNDED and payment.delivery_transaction_id:
            # Refunded by the processor because the OVPP bought for the fee never arrived.
            return await _fail(session, enrollment.id, UNDELIVERED_AND_REFUNDED)
        if payment.status in GIVEN_UP:
            return await _fail(session, enrollment.id, GIVEN_UP[payment.status])
        if payment.status != PaymentStatus.DELIVERED:
            return None
        return await _connect(session, services=services, enrollment=enrollment, bought=payment)


async def _connect(
    session: AsyncSession,
    *,
    services: ProgramServices,
    enrollment: Enrollment,
    bought: OnrampPayment,
) -> str | None:
    """The WALLET-style connect, signed by the customer's wallet with the OVPP just bought."""
    customer = await session.get(Customer, enrollment.customer_id)
    wallet = (
        await session.execute(select(Wallet).where(Wallet.customer_id == enrollment.customer_id))
    ).scalar_one()
    assert customer is not None
    account = CustomerAccount(customer=customer, wallet=wallet)
    # Reads first (the routing re-check and the balance): no lock is held while they run.
    check = await service.check_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=enrollment.device_row_id,
        program_row_id=enrollment.program_row_id,
        protocol=enrollment.protocol,
        payment_method="CARD",
    )
    if not check.routing.ready:
        return await _fail(
            session,
            enrollment.id,
            "the device can no longer join: " + "; ".join(c.reason for c in check.routing.failing),
            bought_kept=True,
        )
    bought_amount = bought.token_amount
    gas_fee = 0 if check.gas_sponsored else max(bought_amount - enrollment.fee_amount, 0)
    available = await service._available_ovpp(session, services, wallet)
    if available < enrollment.fee_amount + gas_fee:
        return await _fail(
            session, enrollment.id, "the OVPP bought for the fee is no longer in the wallet"
        )
    registry = service.registry_of(services)
    routing = check.routing
    calls = [
        service._approve_call(services, spender=registry.address, amount=enrollment.fee_amount),
        registry.connect(
            device_id=routing.device_id,
            model_id=routing.model_id,
            program_id=routing.program_id,
            protocol=enrollment.protocol,
        ),
    ]
    token_fee = GasPayment(fee_token=service.ovpp_token(services), fee_amount=gas_fee)
    nonce_count = required_nonces(calls, GasPayment() if check.gas_sponsored else token_fee)
    # The locks in the order of every relayed action (request_transfer, enroll): the wallet
    # first (its forwarder nonces, the first write), then the sponsor. The gas payment is
    # decided before the enrollment is claimed, so a refusal fails it from FEE_PENDING.
    first_nonce = await take_forwarder_nonces(session, wallet_id=wallet.id, count=nonce_count)
    try:
        payment = (
            await service._gas_payment(
                session,
                services=services,
                tenant_id=enrollment.tenant_id,
                customer_id=enrollment.customer_id,
                gas_sponsored=True,
                gas_limit=service.ENROLL_TX_GAS,
                gas_fee=0,
            )
            if check.gas_sponsored
            else token_fee
        )
    except SponsorRefused as refusal:
        await take_forwarder_nonces(session, wallet_id=wallet.id, count=-nonce_count)
        return await _fail(
            session,
            enrollment.id,
            f"the utility's gas sponsorship refused: {refusal.message}",
            bought_kept=True,
        )
    assert required_nonces(calls, payment) == nonce_count
    claimed = await session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment.id, Enrollment.status == EnrollmentStatus.FEE_PENDING)
        .values(status=EnrollmentStatus.CONNECTING.value, updated_at=utc_now())
    )
    if not claimed.rowcount:  # a concurrent step connected or failed it first
        await take_forwarder_nonces(session, wallet_id=wallet.id, count=-nonce_count)
        return None
    job = await enqueue_calls(
        session,
        services=services,
        wallet=wallet,
        customer_id=customer.id,
        first_nonce=first_nonce,
        calls=calls,
        payment=payment,
        gas_limit=service.ENROLL_TX_GAS,
        kind=JobKind.ENROLL,
        idempotency_key=f"{ENROLL_KEY_PREFIX}{customer.id}:{enrollment.idempotency_key}",
        request_fingerprint=enrollment.request_fingerprint,
        display=Display(
            token=TokenKind.OVPP.value,
            token_address=service.ovpp_token(services).address or "",
            to_address=registry.address,
            amount=enrollment.fee_amount,
        ),
        relayer_key_id=await relayer_key_for(session, wallet.id),
    )
    await session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment.id)
        .values(relay_transaction_id=job.id, routing=service._routing_json(routing))
    )
    return EnrollmentStatus.CONNECTING.value


async def _fail(
    session: AsyncSession, enrollment_id: str, reason: str, *, bought_kept: bool = False
) -> str | None:
    """FEE_PENDING → FAILED with ``reason``; ``bought_kept``: the OVPP bought for the fee has
    arrived and stays in the customer's wallet, and the reason says so."""
    if bought_kept:
        reason = service.with_bought_fee_kept(reason)
    result = await session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, Enrollment.status == EnrollmentStatus.FEE_PENDING)
        .values(
            status=EnrollmentStatus.FAILED.value, error=reason[:ERROR_LENGTH], updated_at=utc_now()
        )
    )
    return EnrollmentStatus.FAILED.value if result.rowcount else None
