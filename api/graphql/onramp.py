"""The card onramp: quotes, card payments and their mutations, a thin skin over onramp/."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from api.context import RequestContext
from api.graphql.common import (
    RESERVED_KEYS,
    TokenKind,
    TokenType,
    require_page_size,
    token_of_kind,
    wire_enum,
)
from api.graphql.failures import InvalidInput, OnrampUnavailable, QuoteExpired, typed_failures
from api.graphql.relayer import Transaction
from chain.tokens import TokenInfo, format_units
from identity.principal import Scope
from onramp import limits, payments, quotes
from onramp.models import OnrampPayment as PaymentRow
from onramp.models import OnrampQuote as QuoteRow
from onramp.models import PaymentPurpose, PaymentStatus
from onramp.pricing import FIAT_DECIMALS
from relayer.models import RelayTransaction

Info = strawberry.Info[RequestContext, None]

OnrampPaymentStatus = wire_enum(
    PaymentStatus,
    name="OnrampPaymentStatus",
    description="Where a card payment is: paid, then the tokens are delivered.",
    value_descriptions={
        "REFUND_FAILED": "Not delivered, and its refund failed after Stripe accepted it (the "
        "card was closed, lost or stolen): the money is returned another way (see error)."
    },
)
OnrampPurpose = wire_enum(
    PaymentPurpose, name="OnrampPurpose", description="What a card payment buys."
)


@strawberry.input
class OnrampQuoteInput:
    token: TokenKind
    fiat_amount: str | None = strawberry.field(
        default=None, description='What to pay, fee included, e.g. "25" (give this or tokenAmount).'
    )
    token_amount: str | None = strawberry.field(
        default=None, description='What to receive, in token units, e.g. "100" (or fiatAmount).'
    )
    currency: str = strawberry.field(description='The fiat currency, e.g. "USD".')


@strawberry.input
class CreateOnrampPaymentInput:
    token: TokenKind
    fiat_amount: str | None = strawberry.field(
        default=None, description="As in the quote: give the same one of the two amounts."
    )
    token_amount: str | None = None
    currency: str
    quote_id: strawberry.ID
    idempotency_key: str = strawberry.field(
        description="Client-chosen, 1–200 characters. The same key with the same input returns "
        "the same payment; with a different input, InvalidInput. " + RESERVED_KEYS
    )


def _token(tokens: list[TokenInfo], kind: str) -> TokenType:
    token = token_of_kind(tokens, kind)
    assert token is not None
    return token


def _tokens(tokens: list[TokenInfo], kind: str, raw: int) -> str:
    return format_units(raw, next(t.decimals for t in tokens if t.kind.value == kind))


def fiat(amount: int) -> str:
    return format_units(amount, FIAT_DECIMALS)


@strawberry.type(description="A price for a card purchase. Valid until expiresAt.")
class OnrampQuote:
    id: strawberry.ID
    token: TokenType
    token_amount: str = strawberry.field(description="What the wallet receives, token units.")
    fiat_amount: str = strawberry.field(description="What the card is charged, fee included.")
    fee: str = strawberry.field(description="The part of fiatAmount that is the fee.")
    currency: str
    price: str = strawberry.field(description="Fiat per whole token, before the fee.")
    expires_at: datetime

    @classmethod
    def from_row(cls, row: QuoteRow, *, tokens: list[TokenInfo]) -> OnrampQuote:
        return cls(
            id=strawberry.ID(row.id),
            token=_token(tokens, row.token),
            token_amount=_tokens(tokens, row.token, row.token_amount),
            fiat_amount=fiat(row.fiat_amount),
            fee=fiat(row.fee_amount),
            currency=row.currency.upper(),
            price=row.price,
            expires_at=row.expires_at,
        )


@strawberry.type(description="A card payment (a Stripe PaymentIntent) and its token delivery.")
class OnrampPayment:
    id: strawberry.ID
    purpose: OnrampPurpose  # type: ignore[valid-type]
    status: OnrampPaymentStatus  # type: ignore[valid-type]
    token: TokenType
    token_amount: str
    fiat_amount: str
    fee: str
    currency: str
    payment_intent_id: str
    client_secret: str | None = strawberry.field(
        description="For the app's payment sheet (Stripe SDK). Only in createOnrampPayment's "
        "answer, while the payment awaits a card."
    )
    delivery_transaction: Transaction | None = strawberry.field(
        description="The relayed transfer from the treasury (hash and status on chain)."
    )
    refunded_amount: str
    refund_failed_amount: str = strawberry.field(
        description="Refunded, then the refund failed (the card would not take it): this part "
        "never reached the card."
    )
    disputed: bool
    clawback_required: bool = strawberry.field(
        description="Refunded or disputed after the tokens were sent: they will be recovered."
    )
    error: str | None
    enrollment_id: strawberry.ID | None
    created_at: datetime
    paid_at: datetime | None
    delivered_at: datetime | None

    @classmethod
    def from_row(
        cls,
        row: PaymentRow,
        *,
        tokens: list[TokenInfo],
        delivery: RelayTransaction | None = None,
        client_secret: str | None = None,
    ) -> OnrampPayment:
        return cls(
            id=strawberry.ID(row.id),
            purpose=OnrampPurpose(row.purpose),
            status=OnrampPaymentStatus(row.status),
            token=_token(tokens, row.token),
            token_amount=_tokens(tokens, row.token, row.token_amount),
            fiat_amount=fiat(row.fiat_amount),
            fee=fiat(row.fee_amount),
            currency=row.currency.upper(),
            payment_intent_id=row.stripe_payment_intent_id,
            client_secret=client_secret,
            delivery_transaction=Transaction.from_row(delivery, tokens=tokens)
            if delivery is not None
            else None,
            refunded_amount=fiat(row.refunded_amount),
            refund_failed_amount=fiat(row.refund_failed_amount),
            disputed=row.disputed,
            clawback_required=row.clawback_required,
            error=row.error,
            enrollment_id=strawberry.ID(row.enrollment_id) if row.enrollment_id else None,
            created_at=row.created_at,
            paid_at=row.paid_at,
            delivered_at=row.delivered_at,
        )


@strawberry.type(
    description="Tokens bought by card that cannot yet leave for an address outside this "
    "service (one entry per purchase, or per transfer that brought held tokens here): they pay "
    "fees and enrollments and go to this service's wallets meanwhile, still held there."
)
class HeldBalance:
    token: TokenType
    amount: str = strawberry.field(description="Token units, as a decimal string.")
    until: datetime = strawberry.field(description="When the hold on this amount ends.")


@strawberry.type(
    description="The customer's card limits (rolling windows, fee included) and what is left "
    "of them: payments awaiting their card count."
)
class CardLimits:
    currency: str
    per_day: str = strawberry.field(description="Most that can be paid by card in 24 hours.")
    per_day_left: str
    per_30_days: str = strawberry.field(description="Most that can be paid by card in 30 days.")
    per_30_days_left: str

    @classmethod
    def from_limits(cls, value: limits.CardLimits) -> CardLimits:
        return cls(
            currency=value.currency.upper(),
            per_day=fiat(value.per_day),
            per_day_left=fiat(value.left_day),
            per_30_days=fiat(value.per_30_days),
            per_30_days_left=fiat(value.left_30_days),
        )


OnrampQuoteResult = Annotated[
    OnrampQuote | InvalidInput | OnrampUnavailable, strawberry.union("OnrampQuoteResult")
]
CreateOnrampPaymentResult = Annotated[
    OnrampPayment | QuoteExpired | InvalidInput | OnrampUnavailable,
    strawberry.union("CreateOnrampPaymentResult"),
]


def _request(input: OnrampQuoteInput | CreateOnrampPaymentInput) -> quotes.QuoteRequest:
    return quotes.QuoteRequest(
        token=input.token.value,
        fiat_amount=input.fiat_amount,
        token_amount=input.token_amount,
        currency=input.currency,
    )


@typed_failures(OnrampQuoteResult)
async def quote_onramp(info: Info, input: OnrampQuoteInput) -> OnrampQuoteResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_READ)
    row = await quotes.quote(
        await context.session(),
        services=context.services,
        wallet_id=account.wallet.id,
        request=_request(input),
    )
    return OnrampQuote.from_row(row, tokens=context.services.chain.tokens)


@typed_failures(CreateOnrampPaymentResult)
async def create_onramp_payment(
    info: Info, input: CreateOnrampPaymentInput
) -> CreateOnrampPaymentResult:  # type: ignore[valid-type]
    context = info.context
    account = await context.account(Scope.WALLET_SIGN)
    opened = await payments.create_payment(
        await context.session(),
        services=context.services,
        account=account,
        request=_request(input),
        quote_id=str(input.quote_id),
        idempotency_key=input.idempotency_key,
    )
    return OnrampPayment.from_row(
        opened.payment, tokens=context.services.chain.tokens, client_secret=opened.client_secret
    )


async def viewer_onramp_payments(info: Info, customer_id: str, first: int) -> list[OnrampPayment]:
    require_page_size(first)
    async with info.context.read_session() as session:
        rows = await payments.payments_of(session, customer_id=customer_id, limit=first)
    tokens = info.context.services.chain.tokens
    return [OnrampPayment.from_row(row, tokens=tokens, delivery=job) for row, job in rows]


async def viewer_held(info: Info, *, customer_id: str, wallet_id: str) -> list[HeldBalance]:
    services = info.context.services
    async with info.context.read_session() as session:
        held = await services.held_funds(session, customer_id=customer_id, wallet_id=wallet_id)
    tokens = services.chain.tokens
    return [
        HeldBalance(
            token=_token(tokens, item.token),
            amount=_tokens(tokens, item.token, item.amount),
            until=item.until,
        )
        for item in held
    ]


async def viewer_card_limits(info: Info, customer_id: str) -> CardLimits:
    settings = info.context.services.settings
    async with info.context.read_session() as session:
        value = await limits.card_limits(session, settings=settings, customer_id=customer_id)
    return CardLimits.from_limits(value)
