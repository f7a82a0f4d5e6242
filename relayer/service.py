"""Relayed transfers: quote, then request. Everything is checked before anything is signed:
scope, input, idempotency, quote, policy, sponsorship and funds. The wallet's forwarder-nonce
counter is taken first, so one wallet's transfers are serialised by the database (a row lock
in PostgreSQL, the write lock in SQLite) and concurrent transfers can never overdraw it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from eth_utils import is_address, to_checksum_address
from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chain.erc20 import erc20_transfer_data
from chain.tokens import AmountError, TokenInfo, TokenKind, format_units, parse_units
from core.db import insert_rows, utc_now
from core.errors import InvalidInput
from core.idempotency import request_fingerprint, require_idempotency_key
from identity.service import CustomerAccount
from relayer import sponsorship
from relayer.deps import RelayerServices
from relayer.errors import InsufficientFunds, PolicyViolation, QuoteExpired
from relayer.forwarder import ForwardRequest, sign_request
from relayer.keys import relayer_key_for
from relayer.models import (
    OPEN_STATUSES,
    FeeQuote,
    RelayStatus,
    RelayTransaction,
    WalletPolicy,
)
from relayer.pricing import GasQuote, fee_in_token
from wallet.keys import sealed_key_of, unlocked_key
from wallet.models import Wallet

# Gas of the forwarded calls and of the whole relayed transaction, measured on anvil (see
# docs/benchmarks.md) with headroom; the quote charges for these limits at most.
TRANSFER_CALL_GAS = 65_000
SPONSORED_TRANSFER_TX_GAS = 130_000
TRANSFER_WITH_FEE_TX_GAS = 200_000
PAYABLE_FEE_TOKENS = (TokenKind.OVPP, TokenKind.STABLECOIN)


@dataclass(frozen=True)
class TransferInput:
    token: str
    to: str
    amount: str
    fee_token: str


@dataclass(frozen=True)
class ValidatedTransfer:
    token: TokenInfo
    to: str
    amount: int
    fee_token: TokenInfo


def validate_transfer(services: RelayerServices, raw: TransferInput) -> ValidatedTransfer:
    token = _token(services, raw.token, field="token")
    fee_token = _token(services, raw.fee_token, field="feeToken")
    if not is_address(raw.to):
        raise InvalidInput(
            "the destination is not an address (0x followed by 40 hex digits)", field="to"
        )
    to = to_checksum_address(raw.to)
    if to == "0x0000000000000000000000000000000000000000":
        raise InvalidInput("tokens cannot be sent to the zero address", field="to")
    try:
        amount = parse_units(raw.amount, token.decimals)
    except AmountError as error:
        raise InvalidInput(str(error), field="amount") from error
    if amount <= 0:
        raise InvalidInput("the amount must be more than zero", field="amount")
    if amount >= 2**256:
        raise InvalidInput("the amount is too large", field="amount")
    return ValidatedTransfer(token=token, to=to, amount=amount, fee_token=fee_token)


def _token(services: RelayerServices, symbol_or_kind: str, *, field: str) -> TokenInfo:
    for token in services.chain.tokens:
        if (
            symbol_or_kind.upper() in (token.kind.value, token.symbol.upper())
            and token.kind in PAYABLE_FEE_TOKENS
        ):
            return token
    raise InvalidInput(
        f"{symbol_or_kind!r} is not a token this wallet can send or pay fees in", field=field
    )


async def current_gas_price(services: RelayerServices) -> int:
    """maxFeePerGas for new quotes: twice the latest base fee plus a 1 gwei tip."""
    return await services.chain.latest_base_fee() * 2 + 10**9


async def quote_transfer(
    session: AsyncSession,
    *,
    services: RelayerServices,
    account: CustomerAccount,
    tenant_id: str,
    raw: TransferInput,
) -> QuoteMade:
    transfer = validate_transfer(services, raw)
    settings = services.settings
    max_fee_per_gas = await current_gas_price(services)
    sponsor, customer_day = await sponsorship.with_customer_day(
        session, tenant_id=tenant_id, customer_id=account.customer.id
    )
    sponsored = sponsor is not None and sponsor.active and sponsor.sponsors_transfers
    gas = GasQuote(
        SPONSORED_TRANSFER_TX_GAS if sponsored else TRANSFER_WITH_FEE_TX_GAS, max_fee_per_gas
    )
    if sponsored:
        assert sponsor is not None
        sponsorship.require_budget(
            sponsor, cost_wei=gas.max_cost_wei, customer_day_spent_wei=customer_day.spent_wei
        )
        fee_amount = 0
    else:
        fee_amount = await fee_in_token(
            gas=gas,
            fee_token=transfer.fee_token.kind,
            fee_token_decimals=transfer.fee_token.decimals,
            oracle=services.price_oracle,
            markup_bps=settings.fee_markup_bps,
            max_age_seconds=settings.price_max_age_seconds,
        )
    quote = FeeQuote(
        wallet_id=account.wallet.id,
        token=transfer.token.kind.value,
        to_address=transfer.to,
        amount=transfer.amount,
        fee_token=transfer.fee_token.kind.value,
        fee_amount=fee_amount,
        gas_limit=gas.gas_limit,
        max_fee_per_gas=max_fee_per_gas,
        sponsored=sponsored,
        sponsor_id=sponsor.id if sponsored and sponsor else None,
        expires_at=utc_now() + timedelta(seconds=settings.quote_ttl_seconds),
    )
    await insert_rows(session, quote)
    return QuoteMade(quote, sponsor_name=sponsor.name if sponsored and sponsor else None)


@dataclass(frozen=True)
class QuoteMade:
    row: FeeQuote
    sponsor_name: str | None


def fingerprint(transfer: ValidatedTransfer, quote_id: str) -> str:
    return request_fingerprint(
        transfer.token.kind.value,
        transfer.to,
        str(transfer.amount),
        transfer.fee_token.kind.value,
        quote_id,
    )


# A fee quote with the wallet's policy for its token, in one statement.
_QUOTE_WITH_POLICY = (
    select(
        FeeQuote.id,
        FeeQuote.wallet_id,
        FeeQuote.token,
        FeeQuote.to_address,
        FeeQuote.amount,
        FeeQuote.fee_token,
        FeeQuote.fee_amount,
        FeeQuote.gas_limit,
        FeeQuote.max_fee_per_gas,
        FeeQuote.sponsored,
        FeeQuote.sponsor_id,
        FeeQuote.expires_at,
        FeeQuote.created_at,
        WalletPolicy.daily_limit,
        WalletPolicy.allowed_destinations,
    )
    .outerjoin(
        WalletPolicy,
        and_(WalletPolicy.wallet_id == FeeQuote.wallet_id, WalletPolicy.token == FeeQuote.token),
    )
    .where(FeeQuote.id == bindparam("quote_id"), FeeQuote.wallet_id == bindparam("wallet_id"))
)

# The wallet's jobs a new transfer must know about, in one statement: the one this idempotency
# key made, every open one (their amounts are not on chain yet) and the last day's (the daily
# limit; a quote is used only by a transfer made after it). Served by three indexes.
_RECENT_JOBS = select(
    RelayTransaction.id,
    RelayTransaction.idempotency_key,
    RelayTransaction.request_fingerprint,
    RelayTransaction.quote_id,
    RelayTransaction.token,
    RelayTransaction.amount,
    RelayTransaction.fee_token,
    RelayTransaction.fee_amount,
    RelayTransaction.status,
    RelayTransaction.created_at,
).where(
    RelayTransaction.wallet_id == bindparam("wallet_id"),
    or_(
        RelayTransaction.idempotency_key == bindparam("idempotency_key"),
        RelayTransaction.created_at >= bindparam("since"),
        RelayTransaction.status.in_(OPEN_STATUSES),
    ),
)


async def request_transfer(
    session: AsyncSession,
    *,
    services: RelayerServices,
    account: CustomerAccount,
    raw: TransferInput,
    quote_id: str,
    idempotency_key: str,
) -> RelayTransaction:
    """Queue a relayed transfer, or return the one this idempotency key already made; the
    caller commits with ``commit_transfer``, which may still refuse a sponsored one.

    For a new sponsored transfer on PostgreSQL, six statements (quote, nonces, the wallet's
    recent jobs, the job, its charge, and the commit that reserves it) and one chain read."""
    require_idempotency_key(idempotency_key)
    transfer = validate_transfer(services, raw)
    wallet_id = account.wallet.id
    now = utc_now()

    quote = (
        (
            await session.execute(
                _QUOTE_WITH_POLICY, {"quote_id": quote_id, "wallet_id": wallet_id}
            )
        ).first()
        if quote_id
        else None
    )

    # First write of the transaction: take the wallet's next forwarder nonces. This locks the
    # wallet (PostgreSQL row lock / SQLite write lock) until commit, so the idempotency, budget
    # and balance checks below see every earlier transfer of this wallet.
    request_count = 1 if quote is not None and quote.sponsored else 2
    first_nonce = await _take_forwarder_nonces(session, wallet_id=wallet_id, count=request_count)

    day_ago = now - timedelta(days=1)
    since = min(day_ago, quote.created_at) if quote is not None else day_ago
    jobs = (
        await session.execute(
            _RECENT_JOBS,
            {"wallet_id": wallet_id, "idempotency_key": idempotency_key, "since": since},
        )
    ).all()

    request_fingerprint = fingerprint(transfer, quote_id)
    existing = next((job for job in jobs if job.idempotency_key == idempotency_key), None)
    if existing is not None:
        if existing.request_fingerprint != request_fingerprint:
            raise InvalidInput(
                "this idempotency key was already used for a different transfer",
                field="idempotencyKey",
            )
        await _give_back_nonces(session, wallet_id=wallet_id, count=request_count)
        return await session.get_one(RelayTransaction, existing.id)

    if quote is None:
        raise InvalidInput("unknown quote: ask quoteTransfer for one first", field="quoteId")
    if (quote.token, quote.to_address, quote.amount, quote.fee_token) != (
        transfer.token.kind.value,
        transfer.to,
        transfer.amount,
        transfer.fee_token.kind.value,
    ):
        raise InvalidInput("the quote was made for a different transfer", field="quoteId")
    if quote.expires_at <= now:
        raise QuoteExpired("the fee quote has expired: ask for a new one")
    if any(job.quote_id == quote.id for job in jobs):
        raise InvalidInput("this quote was already used by another transfer", field="quoteId")

    _enforce_policies(
        services,
        transfer=transfer,
        daily_limit=quote.daily_limit,
        allowed_destinations=quote.allowed_destinations,
        spent=sum(
            int(job.amount)
            for job in jobs
            if job.token == transfer.token.kind.value
            and job.status != RelayStatus.FAILED
            and job.created_at >= day_ago
        ),
    )
    await ensure_funds(
        services,
        wallet=account.wallet,
        transfer=transfer,
        fee=quote.fee_amount,
        debits=_debits(job for job in jobs if job.status in OPEN_STATUSES),
    )

    separator = services.forwarder_domain_separator
    deadline = int(time.time()) + services.settings.forward_request_ttl_seconds
    unsigned = [
        ForwardRequest(
            sender=account.wallet.address,
            target=transfer.token.address or "",
            value=0,
            gas=TRANSFER_CALL_GAS,
            nonce=first_nonce,
            deadline=deadline,
            data=erc20_transfer_data(transfer.to, transfer.amount),
        )
    ]
    if not quote.sponsored:
        unsigned.append(
            ForwardRequest(
                sender=account.wallet.address,
                target=transfer.fee_token.address or "",
                value=0,
                gas=TRANSFER_CALL_GAS,
                nonce=first_nonce + 1,
                deadline=deadline,
                data=erc20_transfer_data(services.treasury_address, quote.fee_amount),
            )
        )
    with unlocked_key(sealed_key_of(account.wallet), keyring=services.keyring) as private_key:
        signed = [sign_request(r, private_key=private_key, separator=separator) for r in unsigned]

    job = RelayTransaction(
        wallet_id=wallet_id,
        customer_id=account.customer.id,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        token=transfer.token.kind.value,
        token_address=transfer.token.address or "",
        to_address=transfer.to,
        amount=transfer.amount,
        fee_token=None if quote.sponsored else transfer.fee_token.kind.value,
        fee_amount=quote.fee_amount,
        sponsored=quote.sponsored,
        sponsor_id=quote.sponsor_id if quote.sponsored else None,
        quote_id=quote.id,
        forwarder_nonce=first_nonce,
        forward_requests=[r.to_json() for r in signed],
        gas_limit=quote.gas_limit,
        relayer_key_id=await relayer_key_for(session, wallet_id),
        status=RelayStatus.QUEUED,
    )
    await insert_rows(session, job)
    if quote.sponsored:
        # The sponsor's row lock serialises every sponsored job of the utility until its
        # transaction commits, so it is taken last: on PostgreSQL by the commit itself, on
        # SQLite here (docs/benchmarks.md). A refusal raises and the job is rolled back.
        await sponsorship.reserve_within_budget(
            session,
            sponsor_id=quote.sponsor_id,
            customer_id=account.customer.id,
            relay_transaction_id=job.id,
            cost_wei=quote.gas_limit * quote.max_fee_per_gas,
        )
    return job


async def commit_transfer(session: AsyncSession) -> None:
    """Commit ``request_transfer``'s transaction. On PostgreSQL the commit makes a sponsored
    transfer's reservation (``sponsorship.reserve_within_budget``) and may refuse it: then
    nothing is written and ``SponsorRefused`` is raised, naming the rule."""
    await sponsorship.commit_reserving(session)


_TAKE_FORWARDER_NONCES = (
    update(Wallet)
    .where(Wallet.id == bindparam("wallet_id"))
    .values(next_forwarder_nonce=Wallet.next_forwarder_nonce + bindparam("count"))
    .returning(Wallet.next_forwarder_nonce)
    .execution_options(synchronize_session=False)
)


async def _take_forwarder_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> int:
    result = await session.execute(_TAKE_FORWARDER_NONCES, {"wallet_id": wallet_id, "count": count})
    return int(result.scalar_one()) - count


async def _give_back_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> None:
    await _take_forwarder_nonces(session, wallet_id=wallet_id, count=-count)


async def open_debits(session: AsyncSession, wallet_id: str) -> dict[str, int]:
    """What this wallet's not-yet-mined transactions will take, per token kind."""
    rows = (
        await session.execute(
            select(
                RelayTransaction.token,
                RelayTransaction.amount,
                RelayTransaction.fee_token,
                RelayTransaction.fee_amount,
            ).where(
                RelayTransaction.wallet_id == wallet_id, RelayTransaction.status.in_(OPEN_STATUSES)
            )
        )
    ).all()
    return _debits(rows)


def _debits(rows: Iterable[Any]) -> dict[str, int]:
    debits: dict[str, int] = {}
    for row in rows:  # summed in Python: exact on SQLite too
        debits[row.token] = debits.get(row.token, 0) + int(row.amount)
        if row.fee_token:
            debits[row.fee_token] = debits.get(row.fee_token, 0) + int(row.fee_amount)
    return debits


async def ensure_funds(
    services: RelayerServices,
    *,
    wallet: Wallet,
    transfer: ValidatedTransfer,
    fee: int,
    debits: dict[str, int],
) -> None:
    """Refuse unless the chain balances less the open ``debits`` (read before the chain, so a
    job mined in between is counted twice, refusing conservatively, never zero times) cover
    the transfer and its fee."""
    balances = {
        token.kind.value: raw for token, raw in await services.chain.balances(wallet.address)
    }
    needed = {transfer.token.kind.value: transfer.amount}
    if fee:
        needed[transfer.fee_token.kind.value] = needed.get(transfer.fee_token.kind.value, 0) + fee
    for kind, amount in needed.items():
        available = balances.get(kind, 0) - debits.get(kind, 0)
        if amount > available:
            token = next(t for t in services.chain.tokens if t.kind.value == kind)
            raise InsufficientFunds(
                token=token.symbol, required=amount, available=available, decimals=token.decimals
            )


def _enforce_policies(
    services: RelayerServices,
    *,
    transfer: ValidatedTransfer,
    daily_limit: int | None,
    allowed_destinations: list[str] | None,
    spent: int,
) -> None:
    """The wallet's policy for the token (or the default daily limit), given what it sent of
    that token in the last 24 hours (``spent``)."""
    if allowed_destinations is not None:
        allowed = {to_checksum_address(a) for a in allowed_destinations}
        if transfer.to not in allowed:
            raise PolicyViolation(
                "this wallet may only send to its allowed destinations", rule="ALLOWED_DESTINATIONS"
            )
    limit = daily_limit if daily_limit is not None else _default_limit(services, transfer.token)
    if spent + transfer.amount > limit:
        raise PolicyViolation(
            f"the daily limit of {format_units(limit, transfer.token.decimals)} "
            f"{transfer.token.symbol} would be exceeded "
            f"({format_units(spent, transfer.token.decimals)} sent in the last 24 hours)",
            rule="DAILY_LIMIT",
        )


def _default_limit(services: RelayerServices, token: TokenInfo) -> int:
    settings = services.settings
    text = (
        settings.default_daily_limit_ovpp
        if token.kind == TokenKind.OVPP
        else settings.default_daily_limit_stablecoin
    )
    return parse_units(text, token.decimals)
