"""Relayed transfers: quote, then request. Everything is checked before anything is signed:
scope, input, idempotency, quote, policy, sponsorship and funds. The wallet's forwarder-nonce
counter is taken first, so one wallet's transfers are serialised by the database (a row lock
in PostgreSQL, the write lock in SQLite) and concurrent transfers can never overdraw it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eth_utils import to_checksum_address
from sqlalchemy import Row, and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from chain.addresses import checksummed, client_address
from chain.calls import Call
from chain.client import ChainClient
from chain.erc20 import erc20_transfer_data
from chain.tokens import AmountError, TokenInfo, TokenKind, format_units, parse_units
from core.db import insert_rows, utc_now
from core.errors import InvalidInput
from core.idempotency import request_fingerprint, require_idempotency_key
from identity.service import CustomerAccount
from relayer import hold, repository, sponsorship
from relayer.deps import RelayerServices
from relayer.errors import InsufficientFunds, PolicyViolation, QuoteExpired
from relayer.jobs import (
    Display,
    GasPayment,
    queue_call,
    release_nonces,
    reserve_nonces,
)
from relayer.models import (
    OPEN_STATUSES,
    FeeQuote,
    JobKind,
    RelayTransaction,
    WalletPolicy,
)
from relayer.pricing import GasQuote, fee_in_token
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


def validate_transfer(
    services: RelayerServices, raw: TransferInput, *, sender: str
) -> ValidatedTransfer:
    """The transfer in base units and checksummed addresses, or ``InvalidInput``: among
    others, a destination with a wrong checksum or the sender's own address (a transfer to
    oneself would only burn its fee)."""
    token = _token(services, raw.token, field="token")
    fee_token = _token(services, raw.fee_token, field="feeToken")
    to = client_address(raw.to, field="to")
    if to == checksummed(sender):
        raise InvalidInput("this is your own wallet's address: send to someone else", field="to")
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
    transfer = validate_transfer(services, raw, sender=account.wallet.address)
    holds = await hold.transfer_holds(
        session, services=services, account=account, token=transfer.token, to=transfer.to
    )
    if holds.binding:  # the customer learns of the hold before asking to send
        spendable = await spendable_balances(session, chain=services.chain, wallet=account.wallet)
        hold.refuse_held(
            holds.held, token=transfer.token, amount=transfer.amount, spendable=spendable
        )
    settings = services.settings
    max_fee_per_gas = await current_gas_price(services)
    sponsor, customer_day = await sponsorship.with_customer_day(
        session, tenant_id=tenant_id, customer_id=account.customer.id
    )
    sponsored = sponsorship.pays_customers_gas(sponsor)
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


# A fee quote with the wallet's policy for its token, in one statement; of the tables, not the
# models, so that running it takes SQLAlchemy's Core path, not the ORM's.
_QUOTES, _POLICIES = FeeQuote.__table__, WalletPolicy.__table__
_QUOTE_WITH_POLICY = (
    select(*_QUOTES.c, _POLICIES.c.daily_limit, _POLICIES.c.allowed_destinations)
    .select_from(
        _QUOTES.outerjoin(
            _POLICIES,
            and_(
                _POLICIES.c.wallet_id == _QUOTES.c.wallet_id,
                _POLICIES.c.token == _QUOTES.c.token,
            ),
        )
    )
    .where(_QUOTES.c.id == bindparam("quote_id"), _QUOTES.c.wallet_id == bindparam("wallet_id"))
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

    For a new sponsored transfer on PostgreSQL, eight statements (quote, nonces, what the
    wallet's jobs tell a transfer (``repository.transfer_context``: as many rows whatever its
    history), its onramp holds and its moved holds, the job, its charge, and the reserving
    commit; two more when something is held and the recipient is a wallet of this backend:
    the holds move with the tokens) and one chain read."""
    require_idempotency_key(idempotency_key)
    transfer = validate_transfer(services, raw, sender=account.wallet.address)
    wallet_id = account.wallet.id
    now = utc_now()

    quote = await _quote_with_policy(session, quote_id=quote_id, wallet_id=wallet_id)
    calls = [_transfer_call(transfer)]
    payment = _gas_payment(transfer, quote)

    # First write of the transaction: take the wallet's next forwarder nonces. This locks the
    # wallet (PostgreSQL row lock / SQLite write lock) until commit, so the idempotency, budget
    # and balance checks below see every earlier transfer of this wallet.
    first_nonce = await reserve_nonces(session, wallet_id=wallet_id, calls=calls, payment=payment)

    known = await repository.transfer_context(
        session,
        wallet_id=wallet_id,
        token=transfer.token.kind.value,
        idempotency_key=idempotency_key,
        quote_id=quote_id,
        since=now - timedelta(days=1),
    )
    request_fingerprint = fingerprint(transfer, quote_id)
    if known.existing_id is not None:
        if known.existing_fingerprint != request_fingerprint:
            raise InvalidInput(
                "this idempotency key was already used for a different transfer",
                field="idempotencyKey",
            )
        await release_nonces(session, wallet_id=wallet_id, calls=calls, payment=payment)
        return await session.get_one(RelayTransaction, known.existing_id)

    quote = _usable_quote(quote, transfer=transfer, now=now, used=known.quote_used)
    _enforce_policies(services, transfer=transfer, quote=quote, sent=known.sent_since)
    spendable = await ensure_funds(
        session,
        services=services,
        wallet=account.wallet,
        transfer=transfer,
        fee=quote.fee_amount,
        debits=_debits(known.open_jobs),
    )
    holds = await hold.transfer_holds(
        session, services=services, account=account, token=transfer.token, to=transfer.to
    )
    if holds.binding:
        hold.refuse_held(
            holds.held, token=transfer.token, amount=transfer.amount, spendable=spendable
        )
    job = await queue_call(
        session,
        services=services,
        wallet=account.wallet,
        customer_id=account.customer.id,
        calls=calls,
        payment=payment,
        gas_limit=quote.gas_limit,
        kind=JobKind.TRANSFER,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        display=Display(
            token=transfer.token.kind.value,
            token_address=transfer.token.address or "",
            to_address=transfer.to,
            amount=transfer.amount,
        ),
        quote_id=quote.id,
        first_nonce=first_nonce,
        running_total=known.total_now,
    )
    await hold.move_with_transfer(session, holds, job=job, spendable=spendable)
    return job


async def _quote_with_policy(
    session: AsyncSession, *, quote_id: str, wallet_id: str
) -> Row[Any] | None:
    if not quote_id:
        return None
    params = {"quote_id": quote_id, "wallet_id": wallet_id}
    return (await session.execute(_QUOTE_WITH_POLICY, params)).first()


def _transfer_call(transfer: ValidatedTransfer) -> Call:
    return Call(
        target=transfer.token.address or "",
        data=erc20_transfer_data(transfer.to, transfer.amount),
        gas=TRANSFER_CALL_GAS,
    )


def _gas_payment(transfer: ValidatedTransfer, quote: Row[Any] | None) -> GasPayment:
    """The quote's gas payment: its fee in the fee token, or its sponsor charged the gas limit
    at the quoted price (no quote: none, the request is refused or replayed)."""
    if quote is None:
        return GasPayment()
    if quote.sponsored:
        return GasPayment(
            fee_amount=quote.fee_amount,
            sponsor_id=quote.sponsor_id,
            sponsor_charge_wei=quote.gas_limit * quote.max_fee_per_gas,
        )
    return GasPayment(fee_token=transfer.fee_token, fee_amount=quote.fee_amount)


def _usable_quote(
    quote: Row[Any] | None, *, transfer: ValidatedTransfer, now: datetime, used: bool
) -> Row[Any]:
    """``quote`` if it was made for this transfer, is still valid and no job used it."""
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
    if used:
        raise InvalidInput("this quote was already used by another transfer", field="quoteId")
    return quote


async def commit_transfer(session: AsyncSession) -> None:
    """Commit ``request_transfer``'s transaction. On PostgreSQL the commit makes a sponsored
    transfer's reservation (``sponsorship.reserve_within_budget``) and may refuse it: then
    nothing is written and ``SponsorRefused`` is raised, naming the rule."""
    await sponsorship.commit_reserving(session)


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


async def spendable_balances(
    session: AsyncSession,
    *,
    chain: ChainClient,
    wallet: Wallet,
    debits: dict[str, int] | None = None,
) -> dict[str, int]:
    """Per token kind, what ``wallet`` can still spend: its chain balance less what its open
    jobs will take (``debits``, read here unless the caller read them in this transaction).
    The debits are read before the chain, so a job mined in between is counted twice,
    refusing conservatively, never zero times."""
    if debits is None:
        debits = await open_debits(session, wallet.id)
    balances = {token.kind.value: raw for token, raw in await chain.balances(wallet.address)}
    return {kind: balances.get(kind, 0) - debits.get(kind, 0) for kind in balances.keys() | debits}


async def ensure_funds(
    session: AsyncSession,
    *,
    services: RelayerServices,
    wallet: Wallet,
    transfer: ValidatedTransfer,
    fee: int,
    debits: dict[str, int],
) -> dict[str, int]:
    """Refuse unless what the wallet can spend, given its open ``debits``, covers the transfer
    and its fee; returns what it can spend, per token kind."""
    spendable = await spendable_balances(
        session, chain=services.chain, wallet=wallet, debits=debits
    )
    needed = {transfer.token.kind.value: transfer.amount}
    if fee:
        needed[transfer.fee_token.kind.value] = needed.get(transfer.fee_token.kind.value, 0) + fee
    for kind, amount in needed.items():
        available = spendable.get(kind, 0)
        if amount > available:
            token = next(t for t in services.chain.tokens if t.kind.value == kind)
            raise InsufficientFunds(
                token=token.symbol, required=amount, available=available, decimals=token.decimals
            )
    return spendable


def _enforce_policies(
    services: RelayerServices,
    *,
    transfer: ValidatedTransfer,
    quote: Row[Any],
    sent: int,
) -> None:
    """The wallet's policy for the token (the quote's row carries it) or the default daily
    limit, given what it ``sent`` of that token in the last 24 hours."""
    daily_limit, allowed_destinations = quote.daily_limit, quote.allowed_destinations
    if allowed_destinations is not None:
        allowed = {to_checksum_address(a) for a in allowed_destinations}
        if transfer.to not in allowed:
            raise PolicyViolation(
                "this wallet may only send to its allowed destinations", rule="ALLOWED_DESTINATIONS"
            )
    limit = daily_limit if daily_limit is not None else _default_limit(services, transfer.token)
    if sent + transfer.amount > limit:
        raise PolicyViolation(
            f"the daily limit of {format_units(limit, transfer.token.decimals)} "
            f"{transfer.token.symbol} would be exceeded "
            f"({format_units(sent, transfer.token.decimals)} sent in the last 24 hours)",
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
