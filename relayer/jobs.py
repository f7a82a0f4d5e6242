"""The relayer's one way in: queue calls signed by a custodial wallet, get a job.

Every kind of job (a transfer, an enrollment's connect, an onramp delivery) is a list of
``Call``s the wallet signs at consecutive forwarder nonces, plus the gas payment: a token fee
transferred in the same atomic batch, or a sponsor's charge. The worker signs, sends, tracks
and bumps every job alike.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from chain.erc20 import erc20_transfer_data
from chain.tokens import TokenInfo
from core.db import insert_rows
from relayer import repository, sponsorship
from relayer.deps import RelayerServices
from relayer.forwarder import ForwardRequest, sign_request
from relayer.keys import relayer_key_for
from relayer.models import JobKind, RelayStatus, RelayTransaction, Sponsor, SponsorCharge
from wallet.keys import sealed_key_of, unlocked_key
from wallet.kms import KeyRing
from wallet.models import Wallet

FEE_CALL_GAS = 65_000


@dataclass(frozen=True)
class GasPayment:
    """Who pays a job's gas: a token fee collected in the same batch (``fee_token``,
    ``fee_amount``), or a sponsor charged ``sponsor_charge_wei``, either ``sponsor`` (locked and
    its budget checked by the caller: charged at once) or ``sponsor_id`` (its budget checked by
    ``sponsorship.reserve_within_budget``: at commit on PostgreSQL, see ``commit_reserving``)."""

    fee_token: TokenInfo | None = None
    fee_amount: int = 0
    sponsor: Sponsor | None = None
    sponsor_charge_wei: int = 0
    sponsor_id: str | None = None

    @property
    def collects_fee(self) -> bool:
        return self.fee_token is not None and self.fee_amount > 0

    @property
    def sponsored(self) -> bool:
        return self.sponsor is not None or self.sponsor_id is not None


@dataclass(frozen=True)
class Display:
    """How the job shows in the customer's history."""

    token: str
    token_address: str
    to_address: str
    amount: int


# Prebuilt: the transfer hot path runs it once per request.
# Of the table, not the model: SQLAlchemy's Core path, not the ORM's.
_WALLETS = Wallet.__table__
_TAKE_FORWARDER_NONCES = (
    update(_WALLETS)
    .where(_WALLETS.c.id == bindparam("wallet_id"))
    .values(next_forwarder_nonce=_WALLETS.c.next_forwarder_nonce + bindparam("count"))
    .returning(_WALLETS.c.next_forwarder_nonce)
)


async def _take_forwarder_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> int:
    """Reserve ``count`` consecutive forwarder nonces; the first write of the transaction, so it
    also locks the wallet until commit (a row lock in PostgreSQL, the write lock in SQLite).
    Returns the first."""
    result = await session.execute(_TAKE_FORWARDER_NONCES, {"wallet_id": wallet_id, "count": count})
    return int(result.scalar_one()) - count


async def _give_back_forwarder_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> None:
    """Return the last ``count`` nonces taken, for a caller that took them and queued nothing
    (an idempotent replay, a refusal it answers without rolling back)."""
    await _take_forwarder_nonces(session, wallet_id=wallet_id, count=-count)


def required_nonces(calls: list[Call], payment: GasPayment) -> int:
    return len(calls) + (1 if payment.collects_fee else 0)


async def reserve_nonces(
    session: AsyncSession, *, wallet_id: str, calls: list[Call], payment: GasPayment
) -> int:
    """Take the forwarder nonces a job of ``calls`` paid by ``payment`` needs, locking the
    wallet until commit. For a caller that must hold the wallet before it decides the job;
    returns the first nonce, to hand to ``queue_call``."""
    return await _take_forwarder_nonces(
        session, wallet_id=wallet_id, count=required_nonces(calls, payment)
    )


async def release_nonces(
    session: AsyncSession, *, wallet_id: str, calls: list[Call], payment: GasPayment
) -> None:
    """Give back what ``reserve_nonces`` took, for a caller that then queued nothing."""
    await _give_back_forwarder_nonces(
        session, wallet_id=wallet_id, count=required_nonces(calls, payment)
    )


def sign_calls(
    wallet: Wallet,
    *,
    calls: list[Call],
    first_nonce: int,
    deadline: int,
    keyring: KeyRing,
    separator: bytes,
) -> list[ForwardRequest]:
    """The wallet's forward requests for ``calls`` at consecutive nonces from ``first_nonce``."""
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
    with unlocked_key(sealed_key_of(wallet), keyring=keyring) as private_key:
        return [sign_request(r, private_key=private_key, separator=separator) for r in unsigned]


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
    running_total: int | None = None,
) -> RelayTransaction:
    """Sign ``calls`` (and the fee transfer) as ``wallet`` and queue them as one atomic job on
    the wallet's sticky relayer key, reserving the sponsor's charge if the sponsor pays. Takes
    the forwarder nonces unless ``first_nonce`` says they were reserved already, and reads the
    wallet's running total of the job's token unless the caller read it (``running_total``)
    under that lock."""
    if first_nonce is None:
        first_nonce = await reserve_nonces(
            session, wallet_id=wallet.id, calls=calls, payment=payment
        )
    if running_total is None:
        running_total = await repository.running_total(
            session, wallet_id=wallet.id, token=display.token
        )
    return await _enqueue_calls(
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
        running_total=running_total + display.amount,
    )


async def _enqueue_calls(
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
    running_total: int,
    quote_id: str | None = None,
) -> RelayTransaction:
    """Sign ``calls`` (plus the fee transfer) with the wallet's key at the reserved nonces and
    insert them as one atomic relayed transaction, ``running_total`` its wallet's total of its
    token with it; the returned row is not in the session."""
    fee_token = payment.fee_token if payment.collects_fee else None
    if fee_token is not None:
        calls = [
            *calls,
            Call(
                target=fee_token.address or "",
                data=erc20_transfer_data(services.treasury_address, payment.fee_amount),
                gas=FEE_CALL_GAS,
            ),
        ]
    signed = sign_calls(
        wallet,
        calls=calls,
        first_nonce=first_nonce,
        deadline=int(time.time()) + services.settings.forward_request_ttl_seconds,
        keyring=services.keyring,
        separator=services.forwarder_domain_separator,
    )
    sponsor_id = payment.sponsor.id if payment.sponsor is not None else payment.sponsor_id
    job = RelayTransaction(
        wallet_id=wallet.id,
        customer_id=customer_id,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        kind=str(kind),
        token=display.token,
        token_address=display.token_address,
        to_address=display.to_address,
        amount=display.amount,
        fee_token=fee_token.kind.value if fee_token is not None else None,
        fee_amount=payment.fee_amount,
        sponsored=payment.sponsored,
        sponsor_id=sponsor_id,
        quote_id=quote_id,
        running_total=running_total,
        forwarder_nonce=first_nonce,
        forward_requests=[r.to_json() for r in signed],
        gas_limit=gas_limit,
        relayer_key_id=relayer_key_id,
        status=RelayStatus.QUEUED,
    )
    await insert_rows(session, job)
    await _reserve_sponsor_charge(session, job=job, payment=payment)
    return job


async def _reserve_sponsor_charge(
    session: AsyncSession, *, job: RelayTransaction, payment: GasPayment
) -> None:
    """The sponsor's row lock serialises every sponsored job of the utility until its
    transaction commits, so it is taken last, after the job's insert. A refusal raises and the
    caller rolls the job back."""
    if payment.sponsor is not None:
        await sponsorship.reserve(
            session,
            sponsor=payment.sponsor,
            customer_id=job.customer_id,
            charge=SponsorCharge(
                sponsor_id=payment.sponsor.id,
                customer_id=job.customer_id,
                relay_transaction_id=job.id,
                amount_wei=payment.sponsor_charge_wei,
            ),
        )
    elif payment.sponsor_id is not None:
        await sponsorship.reserve_within_budget(
            session,
            sponsor_id=payment.sponsor_id,
            customer_id=job.customer_id,
            relay_transaction_id=job.id,
            cost_wei=payment.sponsor_charge_wei,
        )
