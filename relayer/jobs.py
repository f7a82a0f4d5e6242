"""The relayer's one way in: queue calls signed by a custodial wallet, get a job.

Every kind of job (a transfer, an enrollment's connect, an onramp delivery) is a list of
``Call``s the wallet signs at consecutive forwarder nonces, plus the gas payment: a token fee
transferred in the same atomic batch, or a sponsor's charge. The worker signs, sends, tracks
and bumps every job alike.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from relayer.calls import (
    Display,
    GasPayment,
    enqueue_calls,
    required_nonces,
    take_forwarder_nonces,
)
from relayer.deps import RelayerServices
from relayer.keys import relayer_key_for
from relayer.models import JobKind, RelayTransaction
from wallet.models import Wallet

__all__ = ["Display", "GasPayment", "queue_call", "reserve_nonces"]


async def reserve_nonces(
    session: AsyncSession, *, wallet_id: str, calls: list[Call], payment: GasPayment
) -> int:
    """Take the forwarder nonces a job of ``calls`` paid by ``payment`` needs, locking the
    wallet until commit. For a caller that must hold the wallet before it decides the job;
    returns the first nonce, to hand to ``queue_call``."""
    return await take_forwarder_nonces(
        session, wallet_id=wallet_id, count=required_nonces(calls, payment)
    )


async def queue_call(
    session: AsyncSession,
    *,
    services: RelayerServices,
    wallet: Wallet,
    customer_id: str,
    calls: list[Call],
    payment: GasPayment,
    gas_limit: int,
    kind: JobKind,
    idempotency_key: str,
    request_fingerprint: str,
    display: Display,
    quote_id: str | None = None,
    first_nonce: int | None = None,
) -> RelayTransaction:
    """Sign ``calls`` (and the fee transfer) as ``wallet`` and queue them as one atomic job on
    the wallet's sticky relayer key, reserving the sponsor's charge if the sponsor pays. Takes
    the forwarder nonces unless ``first_nonce`` says they were reserved already."""
    if first_nonce is None:
        first_nonce = await reserve_nonces(
            session, wallet_id=wallet.id, calls=calls, payment=payment
        )
    return await enqueue_calls(
        session,
        services=services,
        wallet=wallet,
        customer_id=customer_id,
        first_nonce=first_nonce,
        calls=calls,
        payment=payment,
        gas_limit=gas_limit,
        kind=kind,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        display=display,
        relayer_key_id=await relayer_key_for(session, wallet.id),
        quote_id=quote_id,
    )
