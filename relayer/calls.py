"""Relaying arbitrary calls signed by a custodial wallet (enrollment, registry admin, onramp
delivery): the same pipeline as transfers, with the gas paid by a token fee in the same
atomic batch or charged to a sponsor."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from chain.erc20 import erc20_transfer_data
from chain.tokens import TokenInfo
from relayer.deps import RelayerServices
from relayer.forwarder import ForwardRequest, sign_request
from relayer.models import RelayStatus, RelayTransaction, Sponsor, SponsorCharge
from wallet.keys import sealed_key_of, unlocked_account
from wallet.models import Wallet

FEE_CALL_GAS = 65_000


async def take_forwarder_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> int:
    """Reserve ``count`` consecutive forwarder nonces; the first write of the transaction, so it
    also locks the wallet until commit. Returns the first."""
    result = await session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(next_forwarder_nonce=Wallet.next_forwarder_nonce + count)
        .returning(Wallet.next_forwarder_nonce)
    )
    return int(result.scalar_one()) - count


@dataclass(frozen=True)
class GasPayment:
    """Either a token fee collected in the same batch, or a sponsor charge."""

    fee_token: TokenInfo | None = None
    fee_amount: int = 0
    sponsor: Sponsor | None = None
    sponsor_charge_wei: int = 0


@dataclass(frozen=True)
class Display:
    """How the job shows in the customer's history."""

    token: str
    token_address: str
    to_address: str
    amount: int


async def enqueue_calls(
    session: AsyncSession,
    *,
    services: RelayerServices,
    wallet: Wallet,
    customer_id: str,
    first_nonce: int,
    calls: list[Call],
    payment: GasPayment,
    gas_limit: int,
    kind: str,
    idempotency_key: str,
    request_fingerprint: str,
    display: Display,
    relayer_key_id: str,
    quote_id: str | None = None,
) -> RelayTransaction:
    """Sign ``calls`` (plus the fee transfer) with the wallet's key at the reserved nonces and
    queue them as one atomic relayed transaction."""
    deadline = int(time.time()) + services.settings.forward_request_ttl_seconds
    unsigned = [
        ForwardRequest(
            sender=wallet.address,
            target=call.target,
            value=0,
            gas=call.gas,
            nonce=first_nonce + index,
            deadline=deadline,
            data=call.data,
        )
        for index, call in enumerate(calls)
    ]
    if payment.fee_token is not None and payment.fee_amount > 0:
        unsigned.append(
            ForwardRequest(
                sender=wallet.address,
                target=payment.fee_token.address or "",
                value=0,
                gas=FEE_CALL_GAS,
                nonce=first_nonce + len(calls),
                deadline=deadline,
                data=erc20_transfer_data(services.treasury_address, payment.fee_amount),
            )
        )
    separator = services.forwarder_domain_separator
    with unlocked_account(sealed_key_of(wallet), keyring=services.keyring) as signer:
        signed = [sign_request(r, private_key=signer.key, separator=separator) for r in unsigned]
    job = RelayTransaction(
        wallet_id=wallet.id,
        customer_id=customer_id,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        kind=kind,
        token=display.token,
        token_address=display.token_address,
        to_address=display.to_address,
        amount=display.amount,
        fee_token=payment.fee_token.kind.value
        if payment.fee_token and payment.fee_amount
        else None,
        fee_amount=payment.fee_amount,
        sponsored=payment.sponsor is not None,
        sponsor_id=payment.sponsor.id if payment.sponsor else None,
        quote_id=quote_id,
        forwarder_nonce=first_nonce,
        forward_requests=[r.to_json() for r in signed],
        gas_limit=gas_limit,
        relayer_key_id=relayer_key_id,
        status=RelayStatus.QUEUED,
    )
    session.add(job)
    await session.flush()
    if payment.sponsor is not None:
        from relayer.sponsorship import reserve

        await reserve(
            session,
            sponsor=payment.sponsor,
            customer_id=customer_id,
            charge=SponsorCharge(
                sponsor_id=payment.sponsor.id,
                customer_id=customer_id,
                relay_transaction_id=job.id,
                amount_wei=payment.sponsor_charge_wei,
            ),
        )
    return job


def required_nonces(calls: list[Call], payment: GasPayment) -> int:
    return len(calls) + (1 if payment.fee_token is not None and payment.fee_amount > 0 else 0)
