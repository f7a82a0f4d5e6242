"""The card onramp: quotes, card payments (Stripe PaymentIntents), Stripe events, and the
delivery of what was bought from the treasury wallet through the relayer.

Invariants:
- a Stripe event is verified on its raw body and stored once (unique event id), and that is
  committed before anything acts on it; acting on it is a separate transaction, retried until
  it succeeds, so a crash between the two loses nothing;
- nothing trusts an event's snapshot or the order events arrive in: every event makes us
  re-read the PaymentIntent (and its latest charge) from Stripe and move the payment to what
  Stripe says now;
- at most one delivery per PaymentIntent: claiming it is a guarded ``UPDATE … WHERE status =
  'PAID'`` in the same transaction as the relayed transfer, whose idempotency key (derived from
  the PaymentIntent id) is unique for the treasury wallet;
- money back before delivery (a refund or a dispute) means no delivery, ever; money back
  after delivery flags the payment for clawback (README: card onramp);
- a payment whose delivery failed sent no token, so its money goes back: the processor
  refunds it in full through Stripe and it ends REFUNDED (or DISPUTED, when the customer's
  bank got there first);
- a refund can fail after Stripe accepted it (the card was closed, lost or stolen) and its money
  then stays in the platform's balance: what went back is counted refund by refund, never from
  a stale read, so an undelivered payment whose refund failed becomes REFUND_FAILED (an
  operator's, never refunded again automatically: the card that paid refused it, and a refund
  can go to no other) and a delivered one no longer needs a clawback for money that never went
  back;
- an operator's resolution of a payment's case (a clawback to decide, a refund that failed) is
  recorded beside the facts and never changes them; it covers the money movements it was made
  on, so money moving again while the payment still needs an operator clears it (the case is
  open again), and is logged either way.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from eth_utils import to_checksum_address
from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from chain.erc20 import erc20_transfer_data
from chain.tokens import AmountError, TokenInfo, TokenKind, format_units, parse_units
from core.db import utc_now
from core.errors import InvalidInput
from core.idempotency import ONRAMP_DELIVERY_KEY_PREFIX, require_idempotency_key
from core.idempotency import request_fingerprint as fingerprint_of
from identity import repository as identity_repository
from identity.principal import Principal
from identity.service import CustomerAccount, provision
from onramp import repository
from onramp.deps import OnrampServices
from onramp.errors import (
    AlreadyResolved,
    NothingToResolve,
    OnrampPaymentNotFound,
    OnrampUnavailable,
)
from onramp.models import (
    AWAITING_PAYMENT,
    DELIVERY_STARTED,
    NEVER_DELIVERED,
    NOT_SENT_MONEY_BACK,
    OPERATOR_NAME_MAX_LENGTH,
    OPERATOR_NOTE_MAX_LENGTH,
    OnrampPayment,
    OnrampQuote,
    OperatorCase,
    PaymentPurpose,
    PaymentStatus,
    StripeEvent,
    operator_case,
)
from onramp.pricing import (
    FIAT_DECIMALS,
    Priced,
    PricingError,
    parse_fiat,
    price_fiat,
    price_tokens,
    terms_for,
)
from onramp.stripe_gateway import (
    CreatedIntent,
    IntentState,
    StripeObjectMissing,
    VerifiedEvent,
    event_object,
    require_gateway,
)
from relayer.errors import QuoteExpired
from relayer.forwarder import ZERO_ADDRESS
from relayer.jobs import Display, GasPayment, enqueue_calls, take_forwarder_nonces
from relayer.keys import is_relayer_call, relayer_key_for
from relayer.models import FINAL_STATUSES, JobKind, RelayStatus, RelayTransaction
from relayer.service import SPONSORED_TRANSFER_TX_GAS, TRANSFER_CALL_GAS, open_debits

logger = logging.getLogger(__name__)

# The system tenant that owns the onramp treasury wallet. Its issuer is a URN, which no access
# token can ever be validated against (there is no discovery document behind it).
PLATFORM_TENANT_SLUG = "ovpp-platform"
PLATFORM_ISSUER = "urn:ovpp:platform"
TREASURY_SUBJECT = "onramp-treasury"
SELLABLE = (TokenKind.OVPP, TokenKind.STABLECOIN)
_PAYMENT_NAMESPACE = uuid.UUID("6f1b0f5e-3d0a-4c41-9d52-8a6c3f3f0e11")


def delivery_key(payment_intent_id: str) -> str:
    """The delivery job's idempotency key: one per PaymentIntent, for ever."""
    return f"{ONRAMP_DELIVERY_KEY_PREFIX}{payment_intent_id}"


def payment_id_for(customer_id: str, idempotency_key: str) -> str:
    """Deterministic: a retry of the same request names the same payment, so it sends Stripe the
    same Idempotency-Key and metadata and gets the same PaymentIntent back."""
    return str(uuid.uuid5(_PAYMENT_NAMESPACE, f"{customer_id}\x1f{idempotency_key}"))


# -- the treasury --------------------------------------------------------------------------------


async def treasury_account(services: OnrampServices) -> CustomerAccount:
    """The onramp treasury: a custodial wallet of the system tenant, created once."""
    async with services.db.session() as session:
        tenant = await identity_repository.tenant_by_issuer(session, PLATFORM_ISSUER)
        if tenant is None:
            tenant = await identity_repository.upsert_tenant(
                session,
                slug=PLATFORM_TENANT_SLUG,
                name="OpenVPP platform (system)",
                issuer=PLATFORM_ISSUER,
                audience=PLATFORM_ISSUER,
            )
    return await provision(
        services.db,
        principal=Principal(
            tenant_id=tenant.id,
            tenant_slug=tenant.slug,
            issuer=tenant.issuer,
            subject=TREASURY_SUBJECT,
            email=None,
            client_id=None,
            scopes=frozenset(),
        ),
        keyring=services.keyring,
    )


# -- quotes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteRequest:
    token: str
    fiat_amount: str | None
    token_amount: str | None
    currency: str


def sellable_token(services: OnrampServices, kind: str) -> TokenInfo:
    for token in services.chain.tokens:
        if token.kind in SELLABLE and kind.upper() in (token.kind.value, token.symbol.upper()):
            return token
    raise InvalidInput(f"{kind!r} cannot be bought by card", field="token")


def _require_onramp(services: OnrampServices) -> None:
    if services.stripe is None:
        raise OnrampUnavailable(
            "card payments are not available here: the operator has not configured Stripe"
        )


def price_request(services: OnrampServices, request: QuoteRequest) -> tuple[TokenInfo, Priced, str]:
    """Exactly one of the two amounts names the purchase; the other is computed."""
    token = sellable_token(services, request.token)
    terms = terms_for(services.settings, token.kind)
    if request.currency.strip().lower() != terms.currency:
        raise InvalidInput(f"card payments are in {terms.currency.upper()} only", field="currency")
    if (request.fiat_amount is None) == (request.token_amount is None):
        raise InvalidInput("give either fiatAmount or tokenAmount, not both", field="fiatAmount")
    try:
        if request.fiat_amount is not None:
            priced = price_fiat(
                parse_fiat(request.fiat_amount), token_decimals=token.decimals, terms=terms
            )
        else:
            assert request.token_amount is not None
            try:
                amount = parse_units(request.token_amount, token.decimals)
            except AmountError as error:
                raise InvalidInput(str(error), field="tokenAmount") from error
            priced = price_tokens(amount, token_decimals=token.decimals, terms=terms)
    except PricingError as error:
        field = "fiatAmount" if request.fiat_amount is not None else "tokenAmount"
        raise InvalidInput(str(error), field=field) from error
    return token, priced, terms.price_text


async def quote(
    session: AsyncSession, *, services: OnrampServices, wallet_id: str, request: QuoteRequest
) -> OnrampQuote:
    _require_onramp(services)
    token, priced, price_text = price_request(services, request)
    return await _store_quote(
        session,
        services=services,
        wallet_id=wallet_id,
        token=token,
        priced=priced,
        price_text=price_text,
    )


async def quote_tokens(
    session: AsyncSession,
    *,
    services: OnrampServices,
    wallet_id: str,
    token: TokenInfo,
    amount: int,
) -> OnrampQuote:
    """An internal quote for exactly ``amount`` (an enrollment fee bought by card)."""
    terms = terms_for(services.settings, token.kind)
    try:
        priced = price_tokens(amount, token_decimals=token.decimals, terms=terms)
    except PricingError as error:
        raise InvalidInput(str(error), field="paymentMethod") from error
    return await _store_quote(
        session,
        services=services,
        wallet_id=wallet_id,
        token=token,
        priced=priced,
        price_text=terms.price_text,
    )


async def _store_quote(
    session: AsyncSession,
    *,
    services: OnrampServices,
    wallet_id: str,
    token: TokenInfo,
    priced: Priced,
    price_text: str,
) -> OnrampQuote:
    row = OnrampQuote(
        wallet_id=wallet_id,
        token=token.kind.value,
        token_amount=priced.token_amount,
        fiat_amount=priced.fiat_amount,
        fee_amount=priced.fee_amount,
        currency=services.settings.onramp_currency.lower(),
        price=price_text,
        expires_at=utc_now() + timedelta(seconds=services.settings.onramp_quote_ttl_seconds),
    )
    session.add(row)
    await session.flush()
    return row


# -- payments ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenedPayment:
    payment: OnrampPayment
    client_secret: str | None  # for the app's payment sheet, while the payment awaits a card


def _check_key(idempotency_key: str) -> None:
    require_idempotency_key(idempotency_key, limit=200)


async def create_payment(
    session: AsyncSession,
    *,
    services: OnrampServices,
    account: CustomerAccount,
    request: QuoteRequest,
    quote_id: str,
    idempotency_key: str,
) -> OpenedPayment:
    """A card PaymentIntent for a quote, or the one this idempotency key already made (the
    same key with other input is refused)."""
    _require_onramp(services)
    _check_key(idempotency_key)
    request_fingerprint = fingerprint_of(
        request.token.upper(),
        request.fiat_amount or "",
        request.token_amount or "",
        request.currency.lower(),
        quote_id,
    )
    existing = await repository.payment_by_key(
        session, customer_id=account.customer.id, idempotency_key=idempotency_key
    )
    if existing is not None:
        return await replay(services, existing, request_fingerprint=request_fingerprint)

    token, priced, _price = price_request(services, request)
    row = await session.get(OnrampQuote, quote_id) if quote_id else None
    if row is None or row.wallet_id != account.wallet.id:
        raise InvalidInput("unknown quote: ask quoteOnramp for one first", field="quoteId")
    named_amount_matches = (
        row.fiat_amount == priced.fiat_amount
        if request.fiat_amount is not None
        else row.token_amount == priced.token_amount
    )
    if row.token != token.kind.value or not named_amount_matches:
        raise InvalidInput("the quote was made for a different purchase", field="quoteId")
    if row.expires_at <= utc_now():
        raise QuoteExpired("the onramp quote has expired: ask for a new one")
    if await repository.quote_is_used(session, row.id):
        raise InvalidInput("this quote was already used by another payment", field="quoteId")

    payment_id = payment_id_for(account.customer.id, idempotency_key)
    intent = await create_intent(
        services,
        payment_id=payment_id,
        quote=row,
        wallet_address=account.wallet.address,
        purpose=PaymentPurpose.PURCHASE,
    )
    return await insert_payment(
        session,
        services=services,
        account=account,
        payment_id=payment_id,
        quote=row,
        intent=intent,
        idempotency_key=idempotency_key,
        request_fingerprint=request_fingerprint,
        purpose=PaymentPurpose.PURCHASE,
    )


async def create_intent(
    services: OnrampServices,
    *,
    payment_id: str,
    quote: OnrampQuote,
    wallet_address: str,
    purpose: PaymentPurpose,
    enrollment_id: str | None = None,
) -> CreatedIntent:
    """The card PaymentIntent, made before our row so no lock is held during the call. Its
    Idempotency-Key and metadata derive from the (deterministic) payment id."""
    gateway = require_gateway(services.stripe)
    metadata = {
        "ovpp_payment_id": payment_id,
        "ovpp_quote_id": quote.id,
        "ovpp_wallet": wallet_address,
        "ovpp_token": quote.token,
        "ovpp_token_amount": str(quote.token_amount),
        "ovpp_purpose": purpose.value,
    }
    if enrollment_id:
        metadata["ovpp_enrollment_id"] = enrollment_id
    return await gateway.create_card_payment(
        amount=quote.fiat_amount,
        currency=quote.currency,
        metadata=metadata,
        idempotency_key=f"ovpp-onramp-{payment_id}",
    )


async def insert_payment(
    session: AsyncSession,
    *,
    services: OnrampServices,
    account: CustomerAccount,
    payment_id: str,
    quote: OnrampQuote,
    intent: CreatedIntent,
    idempotency_key: str,
    request_fingerprint: str,
    purpose: PaymentPurpose,
    enrollment_id: str | None = None,
) -> OpenedPayment:
    """Store the payment; a concurrent request with the same key or quote loses in SQL, and
    then its PaymentIntent (which nobody can pay: its secret was never handed out) is canceled."""
    now = utc_now()
    inserted = await repository.insert_payment_if_absent(
        session,
        {
            "id": payment_id,
            "customer_id": account.customer.id,
            "wallet_id": account.wallet.id,
            "wallet_address": account.wallet.address,
            "idempotency_key": idempotency_key,
            "request_fingerprint": request_fingerprint,
            "purpose": purpose.value,
            "enrollment_id": enrollment_id,
            "quote_id": quote.id,
            "token": quote.token,
            "token_amount": quote.token_amount,
            "fiat_amount": quote.fiat_amount,
            "fee_amount": quote.fee_amount,
            "currency": quote.currency,
            "stripe_payment_intent_id": intent.id,
            "status": PaymentStatus.REQUIRES_PAYMENT.value,
            "refunded_amount": 0,
            "disputed": False,
            "clawback_required": False,
            "created_at": now,
            "updated_at": now,
        },
    )
    winner = await repository.payment_by_key(
        session, customer_id=account.customer.id, idempotency_key=idempotency_key
    )
    if inserted and winner is not None:
        return OpenedPayment(winner, intent.client_secret)
    gateway = require_gateway(services.stripe)
    if winner is None or winner.stripe_payment_intent_id != intent.id:
        await gateway.cancel(intent.id)
    if winner is None:
        raise InvalidInput("this quote was already used by another payment", field="quoteId")
    return await replay(services, winner, request_fingerprint=request_fingerprint)


async def replay(
    services: OnrampServices, payment: OnrampPayment, *, request_fingerprint: str
) -> OpenedPayment:
    if payment.request_fingerprint != request_fingerprint:
        raise InvalidInput(
            "this idempotency key was already used for a different payment",
            field="idempotencyKey",
        )
    secret = None
    if payment.status in AWAITING_PAYMENT:
        secret = await require_gateway(services.stripe).client_secret(
            payment.stripe_payment_intent_id
        )
    return OpenedPayment(payment, secret)


async def payments_of(
    session: AsyncSession, *, customer_id: str, limit: int
) -> list[tuple[OnrampPayment, RelayTransaction | None]]:
    """The customer's card payments, newest first, each with its delivery transaction."""
    return await repository.payments_of_customer(session, customer_id=customer_id, limit=limit)


# -- Stripe events -------------------------------------------------------------------------------


async def record_event(session: AsyncSession, event: VerifiedEvent) -> bool:
    """Store a verified event once; ``False`` when it was stored before (a redelivery)."""
    return await repository.insert_event_if_absent(
        session,
        {
            "id": str(uuid.uuid4()),
            "stripe_event_id": event.id,
            "type": event.type,
            "object_id": event.object_id,
            "payment_intent_id": event.payment_intent_id,
            "payload": event.payload,
            "stripe_created": event.created,
            "received_at": utc_now(),
            "attempts": 0,
        },
    )


PAYMENT_INTENT_EVENTS = ("payment_intent.",)
MONEY_BACK_EVENTS = ("charge.refunded", "charge.refund.", "refund.", "charge.dispute.")


async def process_event(services: OnrampServices, event_id: str) -> str | None:
    """Act on one stored event in its own transaction; returns the payment it touched. Safe to
    run again, and from two processors at once: it only ever re-reads Stripe and applies what
    Stripe says now through guarded updates. Stripe is read before the first write, so no
    lock is held during a network call."""
    gateway = require_gateway(services.stripe)
    async with services.db.session() as session:
        event = await session.get(StripeEvent, event_id)
        if event is None or event.processed_at is not None:
            return None
        relevant = event.type.startswith(PAYMENT_INTENT_EVENTS) or event.type.startswith(
            MONEY_BACK_EVENTS
        )
        if not relevant:
            await repository.mark_event_processed(session, event.id, note="not an onramp event")
            return None
        payment_intent_id = event.payment_intent_id
        if payment_intent_id is None and (charge_id := _charge_of(event)) is not None:
            try:
                payment_intent_id = await gateway.payment_intent_of_charge(charge_id)
            except StripeObjectMissing:
                payment_intent_id = None
        payment = (
            await repository.payment_by_intent(session, payment_intent_id)
            if payment_intent_id
            else None
        )
        if payment is None:
            await repository.mark_event_processed(
                session, event.id, note="no onramp payment for this PaymentIntent"
            )
            return None
        try:
            state = await gateway.payment_intent(payment.stripe_payment_intent_id)
        except StripeObjectMissing:
            await repository.mark_event_processed(
                session, event.id, note="Stripe no longer knows this PaymentIntent"
            )
            return None
        await apply_intent_state(
            session,
            payment_id=payment.id,
            state=state,
            dispute_seen=event.type.startswith("charge.dispute."),
        )
        if event.payment_intent_id is None:
            event.payment_intent_id = payment.stripe_payment_intent_id
            session.add(event)
        await repository.mark_event_processed(session, event.id)
        return payment.id


def _charge_of(event: StripeEvent) -> str | None:
    obj = event_object(event.payload)
    if obj.get("object") == "charge":
        return obj.get("id")
    charge = obj.get("charge")
    if isinstance(charge, dict):
        return charge.get("id")
    return charge if isinstance(charge, str) else None


async def apply_intent_state(
    session: AsyncSession, *, payment_id: str, state: IntentState, dispute_seen: bool = False
) -> str | None:
    """Move the payment to what Stripe says now (see the module's invariants). Returns the
    new status when it changed.

    A stale read (two processors, or an event's re-read racing a refund's failure) never undoes
    what a fresher one saw: every refund Stripe ever accepted (given back + failed) only grows,
    and so does what failed (a failed refund stays failed); what went back is the difference."""
    payment = await repository.lock_payment(session, payment_id)
    if payment is None:
        return None
    accepted = max(
        payment.refunded_amount + payment.refund_failed_amount,
        state.amount_refunded + state.amount_refund_failed,
    )
    failed = max(payment.refund_failed_amount, state.amount_refund_failed)
    refunded = accepted - failed
    newly_failed = failed > payment.refund_failed_amount
    disputed = (
        payment.disputed
        or state.disputed
        or dispute_seen
        or await repository.dispute_recorded(session, payment.stripe_payment_intent_id)
    )
    money_back = refunded > 0 or disputed
    changes: dict[str, object] = {
        "refunded_amount": refunded,
        "refund_failed_amount": failed,
        "disputed": disputed,
    }
    status = PaymentStatus(payment.status)
    new_status = status
    charged = state.amount if state.succeeded else payment.fiat_amount
    failure = _RefundFailure(
        amount=failed, currency=payment.currency, reason=state.refund_failure_reason
    )
    if status in NOT_SENT_MONEY_BACK:
        # Nothing was sent: the whole amount going back closes the payment (a clawback flag set
        # while the delivery was in flight is void). A refund that failed leaves the customer
        # with neither the tokens nor the money: an operator's. A partial refund or a dispute
        # (an inquiry may end either way) leaves a DELIVERY_FAILED one for the rest of the
        # refund or for an operator, and a REFUNDED one (an operator gave part back before the
        # delivery) as it is.
        if refunded >= charged:
            new_status = PaymentStatus.REFUNDED
            changes["clawback_required"] = False
            if status == PaymentStatus.REFUND_FAILED:
                changes["error"] = _cause_of(payment.error)
        elif failed and (newly_failed or status == PaymentStatus.DELIVERY_FAILED):
            new_status = PaymentStatus.REFUND_FAILED
            changes["error"] = failure.error(cause=_cause_of(payment.error))
    elif status in DELIVERY_STARTED:
        # The tokens were sent (or are on their way): money back means a clawback, and a refund
        # that failed took back nothing, so only what did go back (or a dispute) keeps it.
        if money_back != payment.clawback_required:
            changes["clawback_required"] = money_back
            if money_back:
                logger.warning(
                    "onramp payment %s (%s) was %s after its tokens were sent: flagged for "
                    "clawback",
                    payment.id,
                    payment.stripe_payment_intent_id,
                    "disputed" if disputed else "refunded",
                )
        if newly_failed:
            logger.warning(
                "onramp payment %s (%s): %s after its tokens were sent; %s",
                payment.id,
                payment.stripe_payment_intent_id,
                failure.summary(),
                f"still flagged for clawback ({refunded} back, disputed: {disputed})"
                if money_back
                else "no money went back, so no clawback is due (the customer keeps the tokens)",
            )
    elif status in NEVER_DELIVERED:
        pass
    elif state.succeeded and (
        state.amount != payment.fiat_amount or state.currency != payment.currency
    ):
        new_status = PaymentStatus.DELIVERY_FAILED
        changes["error"] = "Stripe charged an amount other than the quote: not delivered"
    elif status == PaymentStatus.PAID or (status in AWAITING_PAYMENT and state.succeeded):
        if failed and refunded < charged:
            # Given back before the delivery (as REFUNDED would be), and the refund failed.
            new_status = PaymentStatus.REFUND_FAILED
            changes["error"] = failure.error(cause=None)
        elif money_back:
            new_status = PaymentStatus.DISPUTED if disputed else PaymentStatus.REFUNDED
        elif status != PaymentStatus.PAID:
            new_status = PaymentStatus.PAID
            changes["paid_at"] = utc_now()
            changes["error"] = None
    elif state.status == "canceled":
        new_status = PaymentStatus.CANCELED
    elif state.status == "requires_payment_method" and state.last_payment_error:
        new_status = PaymentStatus.PAYMENT_FAILED
        changes["error"] = state.last_payment_error[:500]
    if new_status != status:
        changes["status"] = new_status.value
    # An operator's resolution covers the money movements it was made on: any other one (a
    # stale read changes nothing above, so this is new) reopens a case still open afterwards.
    resolution_outdated = payment.operator_resolved_at is not None and (
        refunded != payment.refunded_amount
        or failed != payment.refund_failed_amount
        or disputed != payment.disputed
    )
    case_after = operator_case(
        status=new_status.value,
        clawback_required=bool(changes.get("clawback_required", payment.clawback_required)),
    )
    outdated_resolution = None
    if resolution_outdated:
        if case_after is not None:
            changes.update(operator_resolved_at=None, operator_resolved_by=None, operator_note=None)
        # Said before the update, which may refresh ``payment`` in the session.
        outdated_resolution = _outdated_resolution(
            payment,
            refunded=refunded,
            failed=failed,
            disputed=disputed,
            status=new_status,
            case_after=case_after,
        )
    moved = await repository.move_payment(
        session, payment_id=payment.id, from_statuses=(status.value,), values=changes
    )
    if moved and outdated_resolution is not None:
        logger.warning("%s", outdated_resolution)
    if moved and new_status == PaymentStatus.REFUND_FAILED and newly_failed:
        logger.error(
            "onramp payment %s (%s): %s; nothing was delivered, and the money is back in the "
            "platform's Stripe balance: return it to the customer another way (%s)",
            payment.id,
            payment.stripe_payment_intent_id,
            failure.summary(),
            new_status.value,
        )
    return new_status.value if moved and new_status != status else None


REFUND_FAILED_NOTE = "the refund failed"


@dataclass(frozen=True)
class _RefundFailure:
    amount: int  # every failed refund of the payment, in the currency's minor unit
    currency: str
    reason: str | None  # Stripe's failure_reason of the latest one

    def summary(self) -> str:
        return (
            f"{format_units(self.amount, FIAT_DECIMALS)} {self.currency.upper()} refunded, then "
            f"the refund failed ({self.reason or 'unknown'})"
        )

    def error(self, *, cause: str | None) -> str:
        """The payment's ``error``: the failure first (what the customer needs to know now),
        then why nothing was sent."""
        text = (
            f"{REFUND_FAILED_NOTE} ({self.reason or 'unknown'}): "
            f"{format_units(self.amount, FIAT_DECIMALS)} {self.currency.upper()} could not be "
            f"returned to the card and will be returned another way"
        )
        return (f"{text}; {cause}" if cause else text)[:500]


def _cause_of(error: str | None) -> str | None:
    """A REFUND_FAILED payment's ``error`` without the refund's failure: why nothing was sent."""
    if error is None or not error.startswith(f"{REFUND_FAILED_NOTE} ("):
        return error
    _failure, separator, cause = error.partition("; ")
    return cause if separator else None


def _money(amount: int, currency: str) -> str:
    return f"{format_units(amount, FIAT_DECIMALS)} {currency.upper()}"


def _outdated_resolution(
    payment: OnrampPayment,
    *,
    refunded: int,
    failed: int,
    disputed: bool,
    status: PaymentStatus,
    case_after: OperatorCase | None,
) -> str:
    """The log line of money that moved on a payment an operator had resolved (``payment``: as
    it was before). It keeps a resolution that is cleared, and says why a kept one may no
    longer fit."""
    case_before = operator_case(status=payment.status, clawback_required=payment.clawback_required)
    moved = (
        f"onramp payment {payment.id} ({payment.stripe_payment_intent_id}): money moved after "
        f"an operator resolved its {case_before or 'case'} ({describe_resolution(payment)}): "
        f"now {_money(refunded, payment.currency)} back, {_money(failed, payment.currency)} of "
        f"refunds failed, disputed: {disputed}"
    )
    if case_after is not None:
        return (
            f"{moved}; the resolution is cleared and the case ({case_after}) is open again for "
            f"an operator (ovpp-wallet onramp resolve)"
        )
    return (
        f"{moved}; it is {status.value} and needs no operator now, so the resolution is kept "
        f"as the record: check that what the operator did still fits (money returned another "
        f"way may now have been returned twice; tokens clawed back for money that stayed)"
    )


# -- operators -----------------------------------------------------------------------------------


def describe_resolution(payment: OnrampPayment) -> str:
    """An operator's resolution in one line: when, who, the note."""
    resolved_at = payment.operator_resolved_at
    when = f"{resolved_at:%Y-%m-%d %H:%M:%S} UTC" if resolved_at is not None else "unresolved"
    return f"resolved {when} by {payment.operator_resolved_by}: {payment.operator_note}"


@dataclass(frozen=True)
class OperatorResolution:
    """An operator's resolution as recorded, with the facts it was recorded beside."""

    payment_id: str
    payment_intent_id: str
    case: OperatorCase
    status: str
    refunded: str  # "10.30 USD": what went back
    refund_failed: str  # what was refunded and then failed
    disputed: bool
    resolved_at: datetime
    resolved_by: str
    note: str


def _operator_text(value: str, *, field: str, max_length: int, missing: str) -> str:
    """``value`` on one line (newlines and runs of spaces become one space), non-empty, at most
    ``max_length`` characters, with no control character: it is printed and logged as is."""
    text = " ".join(value.split())
    if not text:
        raise InvalidInput(missing, field=field)
    if len(text) > max_length:
        raise InvalidInput(
            f"the {field} is {len(text)} characters long; at most {max_length}", field=field
        )
    if not text.isprintable():
        raise InvalidInput(f"the {field} holds a control character", field=field)
    return text


async def resolve_operator_case(
    session: AsyncSession, *, payment_reference: str, note: str, operator: str
) -> OperatorResolution:
    """Record that an operator settled the case a payment waits for (``operator_case``: a
    clawback to decide, or a refund that failed): who, when and how, beside the facts, which
    stay as they are (status, clawback flag, amounts). Reconcile and /metrics stop counting it.
    Refused for an unknown payment, one that needs no operator, and one resolved already (its
    resolution is in the message); money moving again reopens it (``apply_intent_state``).
    ``payment_reference``: the payment's id or its PaymentIntent id."""
    note = _operator_text(
        note,
        field="note",
        max_length=OPERATOR_NOTE_MAX_LENGTH,
        missing="the note is empty: say how the case was settled",
    )
    operator = _operator_text(
        operator,
        field="operator",
        max_length=OPERATOR_NAME_MAX_LENGTH,
        missing="say who settled the case (--operator)",
    )
    reference = payment_reference.strip()
    payment_id = await repository.payment_id_by_reference(session, reference) if reference else None
    if payment_id is None:
        raise OnrampPaymentNotFound(f"no card payment has the id or PaymentIntent id {reference!r}")
    recorded = await repository.resolve_operator_case(
        session, payment_id=payment_id, resolved_at=utc_now(), resolved_by=operator, note=note
    )
    payment = await session.get(OnrampPayment, payment_id, populate_existing=True)
    assert payment is not None  # found above, and payments are never deleted
    named = f"payment {payment.id} ({payment.stripe_payment_intent_id})"
    case = operator_case(status=payment.status, clawback_required=payment.clawback_required)
    if not recorded and case is None:
        earlier = (
            f"; an operator had {describe_resolution(payment)}"
            if payment.operator_resolved_at is not None
            else ""
        )
        raise NothingToResolve(
            f"{named} needs no operator: it is {payment.status}, neither flagged for clawback "
            f"nor REFUND_FAILED{earlier}"
        )
    if not recorded:
        raise AlreadyResolved(
            f"{named} was {describe_resolution(payment)}; nothing recorded (money moving again "
            f"would reopen it)"
        )
    assert case is not None and payment.operator_resolved_at is not None
    logger.info("onramp payment %s: %s %s", named, case, describe_resolution(payment))
    return OperatorResolution(
        payment_id=payment.id,
        payment_intent_id=payment.stripe_payment_intent_id,
        case=case,
        status=payment.status,
        refunded=_money(payment.refunded_amount, payment.currency),
        refund_failed=_money(payment.refund_failed_amount, payment.currency),
        disputed=payment.disputed,
        resolved_at=payment.operator_resolved_at,
        resolved_by=operator,
        note=note,
    )


# -- delivery ------------------------------------------------------------------------------------


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
        if not await _treasury_can_send(
            session, services=services, treasury=treasury, token=token, amount=payment.token_amount
        ):
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
            first_nonce = await take_forwarder_nonces(
                session, wallet_id=treasury.wallet.id, count=1
            )
            recipient = to_checksum_address(payment.wallet_address)
            job = await enqueue_calls(
                session,
                services=services,
                wallet=treasury.wallet,
                customer_id=treasury.customer.id,
                first_nonce=first_nonce,
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
                relayer_key_id=await relayer_key_for(session, treasury.wallet.id),
            )
            job_id = job.id
        await repository.move_payment(
            session,
            payment_id=payment.id,
            from_statuses=(PaymentStatus.DELIVERING.value,),
            values={"delivery_transaction_id": job_id},
        )
        return DeliveryOutcome.QUEUED


async def _treasury_can_send(
    session: AsyncSession,
    *,
    services: OnrampServices,
    treasury: CustomerAccount,
    token: TokenInfo,
    amount: int,
) -> bool:
    debits = await open_debits(session, treasury.wallet.id)
    balances = {
        info.kind.value: raw for info, raw in await services.chain.balances(treasury.wallet.address)
    }
    return balances.get(token.kind.value, 0) - debits.get(token.kind.value, 0) >= amount


async def _delivery_is_dead(
    services: OnrampServices, job: RelayTransaction, *, nonce_filler_status: str | None
) -> bool:
    """Whether a FAILED delivery can never execute, so its money may go back. Its relayer
    transaction is final: the reverted one's receipt, read again now (a reorg may have undone
    it), as deep as ``relayer_confirmations``; or, for one the node refused, the zero-value
    transaction that took its nonce CONFIRMED. And its signed forward requests are out of
    everyone's reach: past their deadline by the chain's clock, or held by a forwarder that
    accepts only the relayer's own keys (``isRelayer``), which never submit a FAILED job."""
    if job.status != RelayStatus.FAILED:
        return False
    assert services.chain.addresses is not None
    calls: list[tuple[str, list[object]]] = [
        ("eth_getBlockByNumber", ["latest", False]),
        is_relayer_call(services.chain.addresses.forwarder, ZERO_ADDRESS),
    ]
    if job.block_number is not None:
        calls.append(("eth_getTransactionReceipt", [job.tx_hash]))
    latest, answer, *receipt = await services.chain.rpc.batch(calls)
    if not isinstance(latest, dict):
        return False
    if job.block_number is None:
        if nonce_filler_status != RelayStatus.CONFIRMED:
            return False
    else:
        reverted = receipt[0]
        if not isinstance(reverted, dict) or int(reverted["status"], 16) != 0:
            return False
        depth = int(latest["number"], 16) - int(reverted["blockNumber"], 16) + 1
        if depth < services.settings.relayer_confirmations:
            return False
    deadlines = [int(request["deadline"]) for request in job.forward_requests]
    if deadlines and max(deadlines) < int(latest["timestamp"], 16):
        return True
    # An older forwarder has no isRelayer (an error, or no word): wait for the deadlines.
    return isinstance(answer, str) and len(answer) == 66


def refund_key(payment_intent_id: str, already_refunded: int) -> str:
    """Stripe's Idempotency-Key for giving back what is left of an undelivered payment: one
    refund for each amount already given back, however often it is asked for."""
    return f"ovpp-undelivered-{payment_intent_id}-{already_refunded}"


async def refund_undelivered(services: OnrampServices, payment_id: str) -> str | None:
    """Give back a DELIVERY_FAILED payment's money in full, once its delivery can no longer
    execute (``_delivery_is_dead``); returns the payment's new status when it moved (REFUNDED).
    A disputed charge is left to the dispute and an operator: Stripe refuses to refund it. A
    charge with a refund that failed is not refunded again (the card that paid refused it, and
    a refund can go to no other): the payment becomes REFUND_FAILED, for an operator.

    Stripe is called outside any transaction and the payment moves only on what a re-read of
    the PaymentIntent shows, so a crash after the refund and before the update is repaired by
    the next round: it finds the refund already made (or repeats the idempotent request)."""
    gateway = require_gateway(services.stripe)
    async with services.db.session() as session:
        payment = await session.get(OnrampPayment, payment_id)
        job = (
            await session.get(RelayTransaction, payment.delivery_transaction_id)
            if payment is not None and payment.delivery_transaction_id
            else None
        )
        nonce_filler_status = (
            await repository.nonce_filler_status(session, job) if job is not None else None
        )
    if payment is None or payment.status != PaymentStatus.DELIVERY_FAILED:
        return None
    if job is not None and not await _delivery_is_dead(
        services, job, nonce_filler_status=nonce_filler_status
    ):
        return None
    payment_intent_id = payment.stripe_payment_intent_id
    state = await gateway.payment_intent(payment_intent_id)
    if (
        state.succeeded
        and not state.disputed
        and not state.amount_refund_failed
        and state.amount_refunded < state.amount
    ):
        await gateway.refund(
            payment_intent_id,
            amount=state.amount - state.amount_refunded,  # what is left: nothing twice
            idempotency_key=refund_key(payment_intent_id, state.amount_refunded),
            reason="the tokens could not be delivered",
        )
        state = await gateway.payment_intent(payment_intent_id)
    async with services.db.session() as session:
        moved = await apply_intent_state(session, payment_id=payment_id, state=state)
    if moved is not None:
        logger.warning(
            "onramp payment %s (%s) was not delivered and is %s: %s of %s given back",
            payment_id,
            payment_intent_id,
            moved,
            state.amount_refunded,
            state.amount,
        )
    return moved


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
