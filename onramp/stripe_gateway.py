"""Everything that talks to Stripe, behind one small class: card PaymentIntents (created with an
Idempotency-Key), refunds, re-reads, listing for reconciliation, and webhook signature
verification.

The API base is configuration (``OVPP_STRIPE_API_BASE``): real Stripe in production, the
embedded localstripe in development and in the tests. Only plain values leave this module, so
nothing else depends on the SDK's object model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import stripe

from core.errors import ConfigurationError
from core.settings import Settings
from onramp.errors import InvalidWebhook, OnrampUnavailable, PaymentProviderUnavailable

logger = logging.getLogger(__name__)

STRIPE_TIMEOUT_SECONDS = 20.0
STRIPE_NETWORK_RETRIES = 2  # retried POSTs reuse the Idempotency-Key, so they cannot charge twice
WEBHOOK_TOLERANCE_SECONDS = 300  # Stripe's default: an older signature is refused (replay)
MAX_IDEMPOTENCY_KEY_LENGTH = 255
REFUND_NOT_MADE = frozenset({"failed", "canceled"})
"""Refund statuses whose money never reached the customer: Stripe put it back in the balance.
A card refund Stripe accepted (``pending`` or ``succeeded``) can still become ``failed`` days
later, when the card turns out closed, lost or stolen; Stripe then sends
``charge.refund.updated`` (and ``refund.failed``), and the charge's ``amount_refunded`` no
longer counts it."""


@dataclass(frozen=True)
class CreatedIntent:
    id: str
    client_secret: str
    status: str


@dataclass(frozen=True)
class IntentState:
    """A PaymentIntent as Stripe sees it now, with what its latest charge says about refunds
    and disputes. ``amount_refunded`` counts only refunds that did not fail (given back or on
    their way); ``amount_refund_failed`` the ones that failed or were canceled after Stripe
    accepted them (their money is back in the platform's balance), known when the charge's
    refunds were read (``StripeGateway.payment_intent``), 0 otherwise."""

    id: str
    status: str
    amount: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)
    charge_id: str | None = None
    amount_refunded: int = 0
    amount_refund_failed: int = 0
    refund_failure_reason: str | None = None  # the latest failed one's: "lost_or_stolen_card"…
    disputed: bool = False
    last_payment_error: str | None = None
    created: int = 0  # Unix time

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class VerifiedEvent:
    """A webhook whose signature verified: the raw body, and where it points."""

    id: str
    type: str
    created: int
    object_type: str | None
    object_id: str | None
    payment_intent_id: str | None
    charge_id: str | None
    payload: str


class StripeObjectMissing(Exception):
    """Stripe does not know this object (another account or environment, or deleted)."""


class StripeGateway:
    def __init__(
        self,
        *,
        api_key: str,
        api_base: str,
        webhook_secret: str,
        timeout_seconds: float = STRIPE_TIMEOUT_SECONDS,
    ) -> None:
        self.api_base = api_base
        self._webhook_secret = webhook_secret
        self._http = stripe.HTTPXClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=STRIPE_NETWORK_RETRIES,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeGateway | None:
        """The gateway, or ``None`` when the onramp is not configured."""
        api_key = settings.resolved_stripe_api_key
        secret = settings.resolved_stripe_webhook_secret
        if not api_key and not secret:
            return None
        if not api_key or not secret:
            raise ConfigurationError(
                "the card onramp needs both OVPP_STRIPE_API_KEY and OVPP_STRIPE_WEBHOOK_SECRET"
            )
        return cls(
            api_key=api_key, api_base=settings.resolved_stripe_api_base, webhook_secret=secret
        )

    async def close(self) -> None:
        await self._http.close_async()

    # -- PaymentIntents --------------------------------------------------------------------

    async def create_card_payment(
        self, *, amount: int, currency: str, metadata: dict[str, str], idempotency_key: str
    ) -> CreatedIntent:
        """A card PaymentIntent for ``amount`` minor units. Stripe replays the first response
        for a repeated ``idempotency_key`` (and refuses one reused with other parameters)."""
        if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
            raise ValueError("a Stripe idempotency key is 1 to 255 characters")
        try:
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount,
                    "currency": currency,
                    "payment_method_types": ["card"],
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as error:
            raise _unavailable("create the card payment", error) from error
        values = intent.to_dict()
        return CreatedIntent(
            id=values["id"], client_secret=values["client_secret"], status=values["status"]
        )

    async def payment_intent(self, payment_intent_id: str) -> IntentState:
        """Re-read a PaymentIntent (with its latest charge and that charge's refunds, each with
        its status): the truth, whatever order the webhooks arrived in."""
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(
                payment_intent_id,
                params={"expand": ["latest_charge", "latest_charge.refunds"]},
            )
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise StripeObjectMissing(payment_intent_id) from error
            raise _unavailable("read the payment", error) from error
        except stripe.StripeError as error:
            raise _unavailable("read the payment", error) from error
        values = intent.to_dict()
        return _intent_state(values, refunds=await self._refunds_of(values.get("latest_charge")))

    async def _refunds_of(self, charge: object) -> list[dict[str, Any]] | None:
        """Every refund of an expanded charge, whatever its status; ``None`` when the charge
        came without its refunds. The expansion holds the first page; a longer list is read
        to its end."""
        if not isinstance(charge, dict) or not isinstance(charge.get("refunds"), dict):
            return None
        first_page = charge["refunds"]
        refunds = list(first_page.get("data") or [])
        if not first_page.get("has_more"):
            return refunds
        refunds = []
        starting_after: str | None = None
        while True:
            params: dict[str, Any] = {"charge": charge["id"], "limit": 100}
            if starting_after:
                params["starting_after"] = starting_after
            try:
                page = await self._client.v1.refunds.list_async(params=params)  # type: ignore[arg-type]
            except stripe.StripeError as error:
                raise _unavailable("read the refunds", error) from error
            values = page.to_dict()
            items = values.get("data") or []
            refunds.extend(items)
            if not values.get("has_more") or not items:
                return refunds
            starting_after = items[-1]["id"]

    async def client_secret(self, payment_intent_id: str) -> str:
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as error:
            raise _unavailable("read the payment", error) from error
        return str(intent.to_dict()["client_secret"])

    async def cancel(self, payment_intent_id: str) -> None:
        """Best effort: cancel a PaymentIntent nobody will pay (a lost creation race)."""
        try:
            await self._client.v1.payment_intents.cancel_async(payment_intent_id)
        except stripe.StripeError as error:
            logger.warning("could not cancel %s: %s", payment_intent_id, error)

    async def cancel_unpaid(self, payment_intent_id: str) -> IntentState:
        """Cancel a PaymentIntent nobody has paid, and say what it is now: ``canceled``, or
        what kept it from being canceled. Stripe cancels only one still awaiting a card; it
        refuses one it is ``processing``, has ``succeeded`` or already ``canceled``, and then
        the answer is the PaymentIntent re-read. Stripe settles a cancel racing a payment: one
        of the two wins."""
        try:
            intent = await self._client.v1.payment_intents.cancel_async(payment_intent_id)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise StripeObjectMissing(payment_intent_id) from error
            return await self.payment_intent(payment_intent_id)
        except stripe.StripeError as error:
            raise _unavailable("cancel the payment", error) from error
        return _intent_state(intent.to_dict())

    async def refund(
        self, payment_intent_id: str, *, amount: int, idempotency_key: str, reason: str
    ) -> None:
        """Give ``amount`` minor units of the payment back. A repeated call within Stripe's
        idempotency window replays the first refund; a charge already refunded in full is not
        an error (the caller re-reads the PaymentIntent to learn the outcome either way)."""
        try:
            await self._client.v1.refunds.create_async(
                params={
                    "payment_intent": payment_intent_id,
                    "amount": amount,
                    "metadata": {"ovpp_reason": reason},
                },
                options={"idempotency_key": idempotency_key},
            )
        except stripe.InvalidRequestError as error:
            if error.code == "charge_already_refunded":
                return
            raise _unavailable("refund the payment", error) from error
        except stripe.StripeError as error:
            raise _unavailable("refund the payment", error) from error

    async def payment_intent_of_charge(self, charge_id: str) -> str | None:
        try:
            charge = await self._client.v1.charges.retrieve_async(charge_id)
        except stripe.InvalidRequestError as error:
            if error.http_status == 404:
                raise StripeObjectMissing(charge_id) from error
            raise _unavailable("read the charge", error) from error
        except stripe.StripeError as error:
            raise _unavailable("read the charge", error) from error
        payment_intent = charge.to_dict().get("payment_intent")
        return _id_of(payment_intent)

    async def payment_intents(
        self, *, page_size: int = 100, created_since: int | None = None
    ) -> AsyncIterator[IntentState]:
        """Every PaymentIntent of the account, newest first, page by page; with
        ``created_since`` (Unix time) only those created then or later: the listing stops at
        the first older one."""
        starting_after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if starting_after:
                params["starting_after"] = starting_after
            try:
                page = await self._client.v1.payment_intents.list_async(params=params)  # type: ignore[arg-type]
            except stripe.StripeError as error:
                raise _unavailable("list the payments", error) from error
            values = page.to_dict()
            items = values.get("data") or []
            for item in items:
                intent = _intent_state(item)
                if created_since is not None and intent.created < created_since:
                    return
                yield intent
            if not values.get("has_more") or not items:
                return
            starting_after = items[-1]["id"]

    # -- webhooks --------------------------------------------------------------------------

    def verify(self, payload: bytes, signature_header: str | None) -> VerifiedEvent:
        """Check the ``Stripe-Signature`` (HMAC-SHA256 over ``"{t}.{raw body}"`` with the
        endpoint secret, dated within 300 s of now either way) on the raw body, then read the
        event. Stripe's SDK refuses only the past: a signature dated ahead would stay
        replayable for as long as it is early, so that side is checked here. The body is read
        as plain JSON: the SDK's ``construct_event`` would also build its object model from
        it, most of the cost of a webhook's intake, for values read once."""
        try:
            text = payload.decode("utf-8")
            stripe.WebhookSignature.verify_header(
                text, signature_header, self._webhook_secret, WEBHOOK_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as error:
            raise InvalidWebhook("the Stripe-Signature does not verify") from error
        except ValueError as error:  # not UTF-8
            raise InvalidWebhook("the body is not a Stripe event") from error
        assert signature_header is not None  # it verified
        if _signed_at(signature_header) > time.time() + WEBHOOK_TOLERANCE_SECONDS:
            raise InvalidWebhook("the Stripe-Signature is dated in the future")
        try:
            values = json.loads(text)
        except ValueError as error:
            raise InvalidWebhook("the body is not a Stripe event") from error
        data = values.get("data") if isinstance(values, dict) else None
        obj = data.get("object") if isinstance(data, dict) else None
        if (
            not isinstance(obj, dict)
            or not isinstance(values.get("id"), str)
            or not isinstance(values.get("type"), str)
        ):
            raise InvalidWebhook("the body is not a Stripe event")
        object_type = obj.get("object")
        object_id = obj.get("id") if isinstance(obj.get("id"), str) else None
        if object_type == "payment_intent":
            payment_intent_id = object_id
        else:
            payment_intent_id = _id_of(obj.get("payment_intent"))
        if object_type == "charge":
            charge_id = object_id
        else:
            charge_id = _id_of(obj.get("charge")) or _id_of(obj.get("latest_charge"))
        return VerifiedEvent(
            id=values["id"],
            type=values["type"],
            created=int(values.get("created") or 0),
            object_type=object_type,
            object_id=object_id,
            payment_intent_id=payment_intent_id,
            charge_id=charge_id,
            payload=text,
        )


def _signed_at(signature_header: str) -> int:
    """The ``t=`` of a verified ``Stripe-Signature`` (the first, as Stripe's SDK reads it)."""
    items = [item.split("=", 2) for item in signature_header.split(",")]
    return int(next(item[1] for item in items if item[0] == "t"))


def require_gateway(gateway: StripeGateway | None) -> StripeGateway:
    if gateway is None:
        raise OnrampUnavailable(
            "card payments are not available here: the operator has not configured Stripe"
        )
    return gateway


def event_object(payload: str) -> dict[str, Any]:
    """The ``data.object`` of a stored (already verified) event body."""
    return (json.loads(payload).get("data") or {}).get("object") or {}


def _intent_state(
    values: dict[str, Any], *, refunds: list[dict[str, Any]] | None = None
) -> IntentState:
    """With the charge's ``refunds`` (every one, with its status), what went back is counted
    refund by refund, so a refund that failed is told apart rather than only missed; without
    them, the charge's ``amount_refunded`` is all there is."""
    charge = values.get("latest_charge")
    charge_values = charge if isinstance(charge, dict) else {}
    error = values.get("last_payment_error")
    amount_refunded = int(charge_values.get("amount_refunded") or 0)
    amount_refund_failed = 0
    failure_reason = None
    if refunds is not None:
        failed = [refund for refund in refunds if refund.get("status") in REFUND_NOT_MADE]
        amount_refunded = sum(
            int(refund.get("amount") or 0)
            for refund in refunds
            if refund.get("status") not in REFUND_NOT_MADE
        )
        amount_refund_failed = sum(int(refund.get("amount") or 0) for refund in failed)
        if failed:
            latest = max(failed, key=lambda refund: int(refund.get("created") or 0))
            failure_reason = str(latest.get("failure_reason") or latest.get("status"))
    return IntentState(
        id=values["id"],
        status=str(values.get("status")),
        amount=int(values.get("amount") or 0),
        currency=str(values.get("currency") or ""),
        metadata={str(k): str(v) for k, v in (values.get("metadata") or {}).items()},
        charge_id=_id_of(charge),
        amount_refunded=amount_refunded,
        amount_refund_failed=amount_refund_failed,
        refund_failure_reason=failure_reason,
        disputed=bool(charge_values.get("disputed")),
        last_payment_error=(error or {}).get("message") if isinstance(error, dict) else None,
        created=int(values.get("created") or 0),
    )


def _id_of(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _unavailable(action: str, error: stripe.StripeError) -> PaymentProviderUnavailable:
    logger.warning("Stripe: could not %s: %r", action, error)
    return PaymentProviderUnavailable(
        f"the payment provider could not {action} just now; try again in a moment"
    )
