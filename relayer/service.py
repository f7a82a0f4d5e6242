"""Relayed transfers: quote, then request. Everything is checked before anything is signed:
scope, input, idempotency, quote, policy, sponsorship and funds. The wallet's forwarder-nonce
counter is taken first, so one wallet's transfers are serialised by the database (a row lock
in PostgreSQL, the write lock in SQLite) and concurrent transfers can never overdraw it."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import timedelta

from eth_utils import is_address, to_checksum_address
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chain.tokens import AmountError, TokenInfo, TokenKind, parse_units
from core.container import Services
from core.db import utc_now
from identity.service import CustomerAccount
from relayer import sponsorship
from relayer.errors import (
    InsufficientFunds,
    InvalidInput,
    PolicyViolation,
    QuoteExpired,
    require_idempotency_key,
)
from relayer.forwarder import ForwardRequest, erc20_transfer_data, sign_request
from relayer.models import (
    OPEN_STATUSES,
    FeeQuote,
    RelayerKey,
    RelayStatus,
    RelayTransaction,
    SponsorCharge,
    WalletPolicy,
)
from relayer.pricing import GasQuote, fee_in_token
from wallet.keys import unlocked_account
from wallet.models import Wallet
from wallet.service import sealed_key_of

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


def validate_transfer(services: Services, raw: TransferInput) -> ValidatedTransfer:
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


def _token(services: Services, symbol_or_kind: str, *, field: str) -> TokenInfo:
    for token in services.chain.tokens:
        if (
            symbol_or_kind.upper() in (token.kind.value, token.symbol.upper())
            and token.kind in PAYABLE_FEE_TOKENS
        ):
            return token
    raise InvalidInput(
        f"{symbol_or_kind!r} is not a token this wallet can send or pay fees in", field=field
    )


async def current_gas_price(services: Services) -> int:
    """maxFeePerGas for new quotes: twice the latest base fee plus a 1 gwei tip."""
    return await services.chain.latest_base_fee() * 2 + 10**9


async def quote_transfer(
    session: AsyncSession,
    *,
    services: Services,
    account: CustomerAccount,
    tenant_id: str,
    raw: TransferInput,
) -> FeeQuote:
    transfer = validate_transfer(services, raw)
    settings = services.settings
    max_fee_per_gas = await current_gas_price(services)
    sponsor = await sponsorship.sponsor_of_tenant(session, tenant_id)
    sponsored = sponsor is not None and sponsor.active and sponsor.sponsors_transfers
    gas = GasQuote(
        SPONSORED_TRANSFER_TX_GAS if sponsored else TRANSFER_WITH_FEE_TX_GAS, max_fee_per_gas
    )
    if sponsored:
        assert sponsor is not None
        await sponsorship.check_budget(
            session, sponsor=sponsor, customer_id=account.customer.id, cost_wei=gas.max_cost_wei
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
    session.add(quote)
    await session.flush()
    return quote


def fingerprint(transfer: ValidatedTransfer, quote_id: str) -> str:
    canonical = json.dumps(
        [
            transfer.token.kind.value,
            transfer.to,
            str(transfer.amount),
            transfer.fee_token.kind.value,
            quote_id,
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def request_transfer(
    session: AsyncSession,
    *,
    services: Services,
    account: CustomerAccount,
    raw: TransferInput,
    quote_id: str,
    idempotency_key: str,
) -> RelayTransaction:
    """Queue a relayed transfer, or return the one this idempotency key already made."""
    require_idempotency_key(idempotency_key)
    transfer = validate_transfer(services, raw)
    wallet_id = account.wallet.id

    # First write of the transaction: take the wallet's next forwarder nonces. This locks the
    # wallet (PostgreSQL row lock / SQLite write lock) until commit, so the idempotency, budget
    # and balance checks below see every earlier transfer of this wallet.
    quote = await session.get(FeeQuote, quote_id) if quote_id else None
    request_count = 1 if quote is not None and quote.sponsored else 2
    first_nonce = await _take_forwarder_nonces(session, wallet_id=wallet_id, count=request_count)

    existing = (
        await session.execute(
            select(RelayTransaction).where(
                RelayTransaction.wallet_id == wallet_id,
                RelayTransaction.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()
    request_fingerprint = fingerprint(transfer, quote_id)
    if existing is not None:
        if existing.request_fingerprint != request_fingerprint:
            raise InvalidInput(
                "this idempotency key was already used for a different transfer",
                field="idempotencyKey",
            )
        await _give_back_nonces(session, wallet_id=wallet_id, count=request_count)
        return existing

    if quote is None or quote.wallet_id != wallet_id:
        raise InvalidInput("unknown quote: ask quoteTransfer for one first", field="quoteId")
    if (quote.token, quote.to_address, quote.amount, quote.fee_token) != (
        transfer.token.kind.value,
        transfer.to,
        transfer.amount,
        transfer.fee_token.kind.value,
    ):
        raise InvalidInput("the quote was made for a different transfer", field="quoteId")
    if quote.expires_at <= utc_now():
        raise QuoteExpired("the fee quote has expired: ask for a new one")
    used = (
        await session.execute(
            select(RelayTransaction.id).where(RelayTransaction.quote_id == quote.id)
        )
    ).first()
    if used is not None:
        raise InvalidInput("this quote was already used by another transfer", field="quoteId")

    await enforce_policies(session, services=services, wallet_id=wallet_id, transfer=transfer)

    sponsor = None
    if quote.sponsored:
        sponsor = await sponsorship.sponsor_of_tenant(session, account.customer.tenant_id)
        if sponsor is None:
            from relayer.errors import SponsorRefused

            raise SponsorRefused("the sponsorship has ended", reason="NOT_ELIGIBLE")

    await ensure_funds(
        session, services=services, wallet=account.wallet, transfer=transfer, fee=quote.fee_amount
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
    with unlocked_account(sealed_key_of(account.wallet), keyring=services.keyring) as signer:
        signed = [sign_request(r, private_key=signer.key, separator=separator) for r in unsigned]

    relayer_key_id = await relayer_key_for(session, wallet_id)

    if sponsor is not None:
        # The sponsor's row lock serialises every sponsored transfer of the utility until this
        # transaction commits, so it is taken last: it covers the budget check and the inserts,
        # not the chain read and the signing above (docs/benchmarks.md).
        sponsor = await sponsorship.lock(session, sponsor)
        await sponsorship.check_budget(
            session,
            sponsor=sponsor,
            customer_id=account.customer.id,
            cost_wei=quote.gas_limit * quote.max_fee_per_gas,
        )

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
        sponsor_id=sponsor.id if sponsor else None,
        quote_id=quote.id,
        forwarder_nonce=first_nonce,
        forward_requests=[r.to_json() for r in signed],
        gas_limit=quote.gas_limit,
        relayer_key_id=relayer_key_id,
        status=RelayStatus.QUEUED,
    )
    session.add(job)
    await session.flush()
    if sponsor is not None:
        await sponsorship.reserve(
            session,
            sponsor=sponsor,
            customer_id=account.customer.id,
            charge=SponsorCharge(
                sponsor_id=sponsor.id,
                customer_id=account.customer.id,
                relay_transaction_id=job.id,
                amount_wei=quote.gas_limit * quote.max_fee_per_gas,
            ),
        )
    return job


async def _take_forwarder_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> int:
    result = await session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(next_forwarder_nonce=Wallet.next_forwarder_nonce + count)
        .returning(Wallet.next_forwarder_nonce)
    )
    return int(result.scalar_one()) - count


async def _give_back_nonces(session: AsyncSession, *, wallet_id: str, count: int) -> None:
    await session.execute(
        update(Wallet)
        .where(Wallet.id == wallet_id)
        .values(next_forwarder_nonce=Wallet.next_forwarder_nonce - count)
    )


async def relayer_key_for(session: AsyncSession, wallet_id: str) -> str:
    """Sticky: all of one wallet's transactions go through one relayer key, so they land in
    the order of the wallet's forwarder nonces."""
    keys = list(
        (
            await session.execute(
                select(RelayerKey).where(RelayerKey.enabled.is_(True)).order_by(RelayerKey.slot)
            )
        ).scalars()
    )
    if not keys:
        raise RuntimeError("no relayer key is configured")
    index = int(hashlib.sha256(wallet_id.encode()).hexdigest(), 16) % len(keys)
    return keys[index].id


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
    debits: dict[str, int] = {}
    for token, amount, fee_token, fee_amount in rows:  # summed in Python: exact on SQLite too
        debits[token] = debits.get(token, 0) + int(amount)
        if fee_token:
            debits[fee_token] = debits.get(fee_token, 0) + int(fee_amount)
    return debits


async def ensure_funds(
    session: AsyncSession,
    *,
    services: Services,
    wallet: Wallet,
    transfer: ValidatedTransfer,
    fee: int,
) -> None:
    # Open debits first, then the chain: a job mined in between is counted twice (refusing
    # conservatively), never zero times.
    debits = await open_debits(session, wallet.id)
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


async def enforce_policies(
    session: AsyncSession, *, services: Services, wallet_id: str, transfer: ValidatedTransfer
) -> None:
    policy = (
        await session.execute(
            select(WalletPolicy).where(
                WalletPolicy.wallet_id == wallet_id, WalletPolicy.token == transfer.token.kind.value
            )
        )
    ).scalar_one_or_none()
    if policy is not None and policy.allowed_destinations is not None:
        allowed = {to_checksum_address(a) for a in policy.allowed_destinations}
        if transfer.to not in allowed:
            raise PolicyViolation(
                "this wallet may only send to its allowed destinations", rule="ALLOWED_DESTINATIONS"
            )
    limit = (
        policy.daily_limit
        if policy is not None and policy.daily_limit is not None
        else _default_limit(services, transfer.token)
    )
    since = utc_now() - timedelta(days=1)
    spent_rows = (
        await session.execute(
            select(RelayTransaction.amount, RelayTransaction.created_at).where(
                RelayTransaction.wallet_id == wallet_id,
                RelayTransaction.token == transfer.token.kind.value,
                RelayTransaction.status != RelayStatus.FAILED,
            )
        )
    ).all()
    spent = sum(int(amount) for amount, created in spent_rows if created >= since)
    if spent + transfer.amount > limit:
        from chain.tokens import format_units

        raise PolicyViolation(
            f"the daily limit of {format_units(limit, transfer.token.decimals)} "
            f"{transfer.token.symbol} would be exceeded "
            f"({format_units(spent, transfer.token.decimals)} sent in the last 24 hours)",
            rule="DAILY_LIMIT",
        )


def _default_limit(services: Services, token: TokenInfo) -> int:
    settings = services.settings
    text = (
        settings.default_daily_limit_ovpp
        if token.kind == TokenKind.OVPP
        else settings.default_daily_limit_stablecoin
    )
    return parse_units(text, token.decimals)
