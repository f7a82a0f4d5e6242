"""Delivery: a PAID payment's tokens go from the treasury to the buyer through the relayer, at
most once per PaymentIntent, and the payment settles when the relayed transfer is final."""

from __future__ import annotations

import logging
from enum import StrEnum

from eth_utils import to_checksum_address

from chain.calls import Call
from chain.erc20 import erc20_transfer_data
from core.db import utc_now
from core.idempotency import ONRAMP_DELIVERY_KEY_PREFIX
from core.idempotency import request_fingerprint as fingerprint_of
from identity.service import CustomerAccount
from onramp import repository
from onramp.deps import OnrampServices
from onramp.models import OnrampPayment, PaymentStatus
from onramp.quotes import sellable_token
from relayer.jobs import Display, GasPayment, queue_call
from relayer.models import FINAL_STATUSES, JobKind, RelayStatus
from relayer.service import SPONSORED_TRANSFER_TX_GAS, TRANSFER_CALL_GAS, spendable_balances

logger = logging.getLogger(__name__)


def delivery_key(payment_intent_id: str) -> str:
    """The delivery job's idempotency key: one per PaymentIntent, for ever."""
    return f"{ONRAMP_DELIVERY_KEY_PREFIX}{payment_intent_id}"


class DeliveryOutcome(StrEnum):
    QUEUED = "QUEUED"  # this call claimed the payment and queued its transfer
    NOTHING_TO_DO = "NOTHING_TO_DO"  # not PAID (any more): someone else claimed it
    OUT_OF_STOCK = "OUT_OF_STOCK"  # the treasury holds too little: stays PAID, tried again


async def deliver(
    services: OnrampServices, payment_id: str, *, treasury: CustomerAccount
) -> DeliveryOutcome:
    """Send a PAID payment's tokens from the treasury: claim and queue the relayed transfer in
    one transaction."""
    async with services.db.session() as session:
        payment = await session.get(OnrampPayment, payment_id)
        if payment is None or payment.status != PaymentStatus.PAID:
            return DeliveryOutcome.NOTHING_TO_DO
        token = sellable_token(services, payment.token)
        stock = await spendable_balances(session, chain=services.chain, wallet=treasury.wallet)
        if stock.get(token.kind.value, 0) < payment.token_amount:
            return DeliveryOutcome.OUT_OF_STOCK
        claimed = await repository.move_payment(
            session,
            payment_id=payment.id,
            from_statuses=(PaymentStatus.PAID.value,),
            values={"status": PaymentStatus.DELIVERING.value},
        )
        if not claimed:
            return DeliveryOutcome.NOTHING_TO_DO
        key = delivery_key(payment.stripe_payment_intent_id)
        earlier = await repository.delivery_jobs(
            session, wallet_id=treasury.wallet.id, idempotency_key=key
        )
        if earlier:  # belt and braces: the unique key would refuse a second job anyway
            job_id = earlier[0].id
        else:
            recipient = to_checksum_address(payment.wallet_address)
            job = await queue_call(
                session,
                services=services,
                wallet=treasury.wallet,
                customer_id=treasury.customer.id,
                calls=[
                    Call(
                        target=token.address or "",
                        data=erc20_transfer_data(recipient, payment.token_amount),
                        gas=TRANSFER_CALL_GAS,
                    )
                ],
                payment=GasPayment(),  # the house pays the gas of a delivery
                gas_limit=SPONSORED_TRANSFER_TX_GAS,
                kind=JobKind.ONRAMP_DELIVERY,
                idempotency_key=key,
                request_fingerprint=fingerprint_of(
                    payment.stripe_payment_intent_id, recipient, str(payment.token_amount)
                ),
                display=Display(
                    token=token.kind.value,
                    token_address=token.address or "",
                    to_address=recipient,
                    amount=payment.token_amount,
                ),
            )
            job_id = job.id
        await repository.move_payment(
            session,
            payment_id=payment.id,
            from_statuses=(PaymentStatus.DELIVERING.value,),
            values={"delivery_transaction_id": job_id},
        )
        return DeliveryOutcome.QUEUED


async def settle_deliveries(services: OnrampServices) -> int:
    """DELIVERING payments whose transfer is final become DELIVERED or DELIVERY_FAILED."""
    async with services.db.session() as session:
        rows = await repository.deliveries_to_settle(
            session, final_statuses=tuple(s.value for s in FINAL_STATUSES)
        )
        for payment_id, job_status, confirmed_at, job_error in rows:
            if job_status == RelayStatus.CONFIRMED:
                values: dict[str, object] = {
                    "status": PaymentStatus.DELIVERED.value,
                    "delivered_at": confirmed_at or utc_now(),
                }
            else:
                values = {
                    "status": PaymentStatus.DELIVERY_FAILED.value,
                    "error": (job_error or "the delivery transaction failed")[:500],
                }
                logger.error("onramp delivery of payment %s failed: %s", payment_id, job_error)
            await repository.move_payment(
                session,
                payment_id=payment_id,
                from_statuses=(PaymentStatus.DELIVERING.value,),
                values=values,
            )
        return len(rows)
