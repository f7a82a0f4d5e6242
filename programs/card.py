"""Enrollment paid by card: the fee is bought through the onramp, then connected automatically.

``enroll_by_card`` runs the routing like any enrollment (nothing is charged when a check fails),
then opens a card payment for exactly the OVPP the enrollment needs (the connection fee, plus
the gas fee unless the utility sponsors gas) and returns the enrollment in FEE_PENDING with the
payment's client secret. Once the payment has succeeded and the OVPP has reached the customer's
wallet, the onramp processor's follower ``advance_card_enrollments`` connects it: the same
relayed call as a WALLET enrollment (approve + connect + gas fee, all or nothing), signed by the
customer's custodial wallet. The enrollment then goes CONNECTING → ACTIVE with no further step
from the customer. Money back before the OVPP was sent (refund, dispute, cancel), or a refund of
it that failed, fails the enrollment; nothing is ever connected without a paid fee. An
enrollment that fails after the OVPP arrived leaves it in the wallet (the payment is not
refunded) and its error says so. A fee never paid is canceled (``card_cancel``): by the
customer's ``unenroll``, or here once its payment window has passed.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

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
from onramp.models import OnrampPayment, OnrampQuote, PaymentPurpose, PaymentStatus
from onramp.quotes import quote_tokens
from onramp.stripe_gateway import require_gateway
from programs import repository
from programs.card_cancel import cancel_unpaid_in_time
from programs.deps import ProgramServices
from programs.enrollment import (
    EnrollmentCheck,
    check_enrollment,
    connect_call,
    not_eligible,
    routing_json,
)
from programs.errors import CardPaymentUnavailable, OtherUtility
from programs.models import Enrollment, EnrollmentStatus
from programs.notices import enrollment_changed
from programs.payment import (
    ENROLL_TX_GAS,
    approve_call,
    available_ovpp,
    gas_payment,
    ovpp_display,
    same_shape,
)
from programs.registry import ovpp_token, registry_of
from programs.status import refresh_status, with_bought_fee_kept
from programs.walls import lock_device, program_of_own_utility, refuse_second_enrollment
from relayer.errors import SponsorRefused
from relayer.jobs import GasPayment, queue_call, release_nonces, reserve_nonces
from relayer.models import JobKind
from wallet import repository as wallet_repository
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
    # Another utility's program is refused before the device is locked.
    await program_of_own_utility(session, account=account, program_row_id=program_row_id)
    await lock_device(session, account=account, device_row_id=device_row_id)
    existing = await repository.enrollment_by_key(
        session, customer_id=account.customer.id, idempotency_key=idempotency_key
    )
    if existing is not None:
        return await _replay(services, session, existing, fingerprint=fingerprint)
    await refuse_second_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
    )
    check = await check_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
        protocol=protocol,
        payment_method="CARD",
    )
    if not check.routing.ready:
        raise not_eligible(check.routing)
    quote = await quote_tokens(
        session,
        services=services,
        wallet_id=account.wallet.id,
        token=ovpp_token(services.chain),
        amount=check.fee + check.gas_fee,
    )
    return await _open_fee_payment(
        session,
        services=services,
        account=account,
        check=check,
        quote=quote,
        device_row_id=device_row_id,
        protocol=protocol,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
    )


async def _open_fee_payment(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    check: EnrollmentCheck,
    quote: OnrampQuote,
    device_row_id: str,
    protocol: str,
    idempotency_key: str,
    fingerprint: str,
) -> CardEnrollment:
    """The card payment at Stripe, then the FEE_PENDING enrollment and the payment's row,
    committed together (with the quote) by ``insert_payment`` before the secret is returned."""
    enrollment_id = str(
        uuid.uuid5(_ENROLLMENT_NAMESPACE, f"{account.customer.id}\x1f{idempotency_key}")
    )
    payment_key = _payment_key(idempotency_key)
    payment_id = onramp.payment_id_for(account.customer.id, payment_key)
    # Stripe first, once the customer's card limits allow it, then the rows; a concurrent
    # twin of this request loses in SQL and gets the winner's enrollment.
    intent = await onramp.create_intent(
        session,
        services,
        payment_id=payment_id,
        quote=quote,
        account=account,
        idempotency_key=payment_key,
        request_fingerprint=fingerprint,
        purpose=PaymentPurpose.ENROLLMENT_FEE,
        enrollment_id=enrollment_id,
    )
    inserted = await repository.insert_fee_pending_enrollment(
        session,
        enrollment_id=enrollment_id,
        customer_id=account.customer.id,
        device_row_id=device_row_id,
        program=check.program,
        protocol=protocol,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        fee_amount=check.fee,
        routing=routing_json(check.routing),
    )
    if not inserted:
        await require_gateway(services.stripe).cancel(intent.id)
        winner = await repository.enrollment_by_key(
            session, customer_id=account.customer.id, idempotency_key=idempotency_key
        )
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
    await enrollment_changed(session, enrollment_id)
    enrollment = await session.get(Enrollment, enrollment_id)
    assert enrollment is not None
    return CardEnrollment(enrollment, opened.client_secret)


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


async def advance_card_enrollments(services: ProgramServices) -> bool:
    """The onramp processor's follower: cancel the enrollments whose fee went unpaid too long
    (``card_cancel``), then move every card-paid enrollment that can move. Returns whether any
    did."""
    moved = await cancel_unpaid_in_time(services)
    async with services.db.session() as session:
        rows = await repository.card_enrollments_to_advance(session)
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
            enrollment = await refresh_status(session, services=services, enrollment=enrollment)
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
    wallet = await wallet_repository.wallet_of_customer(session, enrollment.customer_id)
    assert customer is not None and wallet is not None
    account = CustomerAccount(customer=customer, wallet=wallet)
    # Reads first (the routing re-check and the balance): no lock is held while they run.
    try:
        check = await check_enrollment(
            session,
            services=services,
            account=account,
            device_row_id=enrollment.device_row_id,
            program_row_id=enrollment.program_row_id,
            protocol=enrollment.protocol,
            payment_method="CARD",
        )
    except OtherUtility as refusal:  # opened before utilities were walled off
        return await _fail(session, enrollment.id, refusal.message, bought_kept=True)
    if not check.routing.ready:
        return await _fail(
            session,
            enrollment.id,
            "the device can no longer join: " + "; ".join(c.reason for c in check.routing.failing),
            bought_kept=True,
        )
    bought_amount = bought.token_amount
    gas_fee = 0 if check.gas_sponsored else max(bought_amount - enrollment.fee_amount, 0)
    available = await available_ovpp(session, services, wallet)
    if available < enrollment.fee_amount + gas_fee:
        return await _fail(
            session, enrollment.id, "the OVPP bought for the fee is no longer in the wallet"
        )
    return await _queue_paid_connect(
        session,
        services=services,
        enrollment=enrollment,
        wallet=wallet,
        check=check,
        gas_fee=gas_fee,
    )


async def _queue_paid_connect(
    session: AsyncSession,
    *,
    services: ProgramServices,
    enrollment: Enrollment,
    wallet: Wallet,
    check: EnrollmentCheck,
    gas_fee: int,
) -> str | None:
    """Approve + connect (+ the OVPP gas fee) as one job, once the enrollment is claimed from
    FEE_PENDING; the nonces go back when the sponsor refuses or a concurrent step won."""
    registry = registry_of(services.chain)
    routing = check.routing
    calls = [
        approve_call(services, spender=registry.address, amount=enrollment.fee_amount),
        connect_call(registry, routing=routing, protocol=enrollment.protocol),
    ]
    token_fee = GasPayment(fee_token=ovpp_token(services.chain), fee_amount=gas_fee)
    reserved = GasPayment() if check.gas_sponsored else token_fee
    # The locks in the order of every relayed action (request_transfer, enroll): the wallet
    # first (its forwarder nonces, the first write), then the sponsor. The gas payment is
    # decided before the enrollment is claimed, so a refusal fails it from FEE_PENDING.
    first_nonce = await reserve_nonces(session, wallet_id=wallet.id, calls=calls, payment=reserved)
    try:
        payment = (
            await gas_payment(
                session,
                services=services,
                tenant_id=enrollment.tenant_id,
                customer_id=enrollment.customer_id,
                gas_sponsored=True,
                gas_limit=ENROLL_TX_GAS,
                gas_fee=0,
            )
            if check.gas_sponsored
            else token_fee
        )
    except SponsorRefused as refusal:
        await release_nonces(session, wallet_id=wallet.id, calls=calls, payment=reserved)
        return await _fail(
            session,
            enrollment.id,
            f"the utility's gas sponsorship refused: {refusal.message}",
            bought_kept=True,
        )
    assert same_shape(calls, payment, shape=(calls, reserved))
    if not await repository.claim_fee_pending_for_connect(session, enrollment.id):
        # A concurrent step connected or failed it first.
        await release_nonces(session, wallet_id=wallet.id, calls=calls, payment=reserved)
        return None
    job = await queue_call(
        session,
        services=services,
        wallet=wallet,
        customer_id=enrollment.customer_id,
        calls=calls,
        payment=payment,
        gas_limit=ENROLL_TX_GAS,
        kind=JobKind.ENROLL,
        idempotency_key=f"{ENROLL_KEY_PREFIX}{enrollment.customer_id}:{enrollment.idempotency_key}",
        request_fingerprint=enrollment.request_fingerprint,
        display=ovpp_display(services, to_address=registry.address, amount=enrollment.fee_amount),
        first_nonce=first_nonce,
    )
    await repository.set_connect_job(
        session,
        enrollment_id=enrollment.id,
        relay_transaction_id=job.id,
        routing=routing_json(routing),
    )
    await enrollment_changed(session, enrollment.id)
    return EnrollmentStatus.CONNECTING.value


async def _fail(
    session: AsyncSession, enrollment_id: str, reason: str, *, bought_kept: bool = False
) -> str | None:
    """FEE_PENDING → FAILED with ``reason``; ``bought_kept``: the OVPP bought for the fee has
    arrived and stays in the customer's wallet, and the reason says so."""
    if bought_kept:
        reason = with_bought_fee_kept(reason)
    failed = await repository.end_fee_pending(session, enrollment_id=enrollment_id, reason=reason)
    if not failed:
        return None
    await enrollment_changed(session, enrollment_id)
    return EnrollmentStatus.FAILED.value
