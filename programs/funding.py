"""A utility funds its gas sponsorship with its own tokens: its wallet moves OVPP or stablecoin
to the fee treasury in a relayed job, and the sponsor's funds grow by their worth in native
gas (at the oracle's rates, rounded down) once that job is confirmed, never before and never
twice (docs/relayer.md, "Sponsorship funds"). The utility pays the job's gas as a fee in the
same token, so an administrator's request costs the operator nothing."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from chain.erc20 import erc20_transfer_data
from chain.tokens import TokenInfo, TokenKind
from core.errors import InvalidInput
from core.idempotency import request_fingerprint, require_idempotency_key
from identity.models import Tenant
from programs.admin import utility_wallet
from programs.deps import ProgramServices
from relayer import sponsorship
from relayer.errors import InsufficientFunds
from relayer.jobs import Display, GasPayment, queue_call, release_nonces, reserve_nonces
from relayer.models import FundingSource, JobKind
from relayer.pricing import GasQuote, fee_in_token
from relayer.service import (
    TRANSFER_CALL_GAS,
    TRANSFER_WITH_FEE_TX_GAS,
    current_gas_price,
    spendable_balances,
)
from wallet.models import Wallet

FUNDING_KEY_PREFIX = "sponsor-funding:"
"""Before the client's key: the funding job's key on the utility's wallet (a system wallet, no
client's key is there) and the funding's (apart from the operator's credits, ``operator:``)."""
FUNDING_TOKENS = (TokenKind.OVPP, TokenKind.STABLECOIN)


def funding_token(services: ProgramServices, kind: str) -> TokenInfo:
    for token in services.chain.tokens:
        if token.kind.value == kind and token.kind in FUNDING_TOKENS and token.address:
            return token
    raise InvalidInput(f"{kind!r} cannot fund a sponsorship: use OVPP or STABLECOIN", field="token")


async def fund_sponsorship(
    session: AsyncSession,
    *,
    services: ProgramServices,
    tenant: Tenant,
    token_kind: str,
    amount: int,
    idempotency_key: str,
) -> None:
    """Queue the move of ``amount`` of the token from the utility's wallet to the fee treasury
    and record the sponsor's funding, PENDING until the job is confirmed. The same key again
    changes nothing (another request under it is ``InvalidInput``); a wallet that cannot pay
    the amount and the gas fee is ``InsufficientFunds``, with nothing queued."""
    require_idempotency_key(idempotency_key, limit=255 - len(FUNDING_KEY_PREFIX))
    if amount <= 0:
        raise InvalidInput("the amount must be more than zero", field="amount")
    token = funding_token(services, token_kind)
    # Its own session, which writes when the wallet is new: before this one takes any lock.
    wallet = await utility_wallet(services, tenant)
    credit_wei, calls, payment = await _priced(services, token=token, amount=amount)
    # The wallet's lock (its first write): every funding of this utility waits here, so the
    # key's check and the balance below see every earlier one.
    first_nonce = await reserve_nonces(session, wallet_id=wallet.id, calls=calls, payment=payment)
    sponsor = await sponsorship.sponsor_to_fund(session, tenant_id=tenant.id, name=tenant.name)
    key = FUNDING_KEY_PREFIX + idempotency_key
    if await _replayed(session, sponsor_id=sponsor.id, key=key, token=token, amount=amount):
        await release_nonces(session, wallet_id=wallet.id, calls=calls, payment=payment)
        return
    if credit_wei <= 0:
        raise InvalidInput("the amount is worth no gas: send more", field="amount")
    needed = amount + payment.fee_amount
    await _require_balance(session, services, wallet=wallet, token=token, needed=needed)
    job = await queue_call(
        session,
        services=services,
        wallet=wallet,
        customer_id=wallet.customer_id,
        calls=calls,
        payment=payment,
        gas_limit=TRANSFER_WITH_FEE_TX_GAS,
        kind=JobKind.SPONSOR_FUNDING,
        idempotency_key=key,
        request_fingerprint=request_fingerprint(token.kind.value, str(amount)),
        display=Display(
            token=token.kind.value,
            token_address=token.address or "",
            to_address=services.treasury_address,
            amount=amount,
        ),
        first_nonce=first_nonce,
    )
    await sponsorship.record_on_chain_funding(
        session,
        sponsor_id=sponsor.id,
        idempotency_key=key,
        token=token,
        token_amount=amount,
        credit_wei=credit_wei,
        relay_transaction_id=job.id,
    )


async def _priced(
    services: ProgramServices, *, token: TokenInfo, amount: int
) -> tuple[int, list[Call], GasPayment]:
    """What ``amount`` of the token is worth in gas (rounded down), and the job that moves it
    to the fee treasury with its gas fee in the same token."""
    settings = services.settings
    credit_wei = await sponsorship.gas_funds_of(
        amount,
        token=token,
        oracle=services.price_oracle,
        max_age_seconds=settings.price_max_age_seconds,
    )
    fee = await fee_in_token(
        gas=GasQuote(TRANSFER_WITH_FEE_TX_GAS, await current_gas_price(services)),
        fee_token=token.kind,
        fee_token_decimals=token.decimals,
        oracle=services.price_oracle,
        markup_bps=settings.fee_markup_bps,
        max_age_seconds=settings.price_max_age_seconds,
    )
    calls = [
        Call(
            target=token.address or "",
            data=erc20_transfer_data(services.treasury_address, amount),
            gas=TRANSFER_CALL_GAS,
        )
    ]
    return credit_wei, calls, GasPayment(fee_token=token, fee_amount=fee)


async def _replayed(
    session: AsyncSession, *, sponsor_id: str, key: str, token: TokenInfo, amount: int
) -> bool:
    """Whether this key already made this funding (another one under it is refused)."""
    existing = await sponsorship.funding_of(session, sponsor_id=sponsor_id, idempotency_key=key)
    if existing is None:
        return False
    if (existing.source, existing.token, existing.token_amount) != (
        FundingSource.ON_CHAIN.value,
        token.kind.value,
        amount,
    ):
        raise InvalidInput(
            "this idempotency key was used for another funding", field="idempotencyKey"
        )
    return True


async def _require_balance(
    session: AsyncSession,
    services: ProgramServices,
    *,
    wallet: Wallet,
    token: TokenInfo,
    needed: int,
) -> None:
    """The utility's wallet can spend ``needed`` of the token (its open jobs' debits count)."""
    spendable = await spendable_balances(session, chain=services.chain, wallet=wallet)
    available = spendable.get(token.kind.value, 0)
    if needed > available:
        raise InsufficientFunds(
            token=token.symbol, required=needed, available=available, decimals=token.decimals
        )
