"""Expected failures of the card onramp. The API returns each as a typed union member."""

from __future__ import annotations

from core.errors import DomainError


class OnrampUnavailable(DomainError):
    """Card payments are not configured here (no Stripe key or webhook secret)."""

    code = "ONRAMP_UNAVAILABLE"


class PaymentProviderUnavailable(DomainError):
    """Stripe did not answer, or refused a request we made; nothing was charged."""

    code = "PAYMENT_PROVIDER_UNAVAILABLE"


class InvalidWebhook(DomainError):
    """A webhook whose signature does not verify (forged, stale, or not Stripe's)."""

    code = "INVALID_WEBHOOK"


class OnrampPaymentNotFound(DomainError):
    """No card payment has this id or PaymentIntent id."""

    code = "ONRAMP_PAYMENT_NOT_FOUND"


class NothingToResolve(DomainError):
    """An operator resolution for a payment that needs no operator (neither flagged for
    clawback nor REFUND_FAILED)."""

    code = "NOTHING_TO_RESOLVE"


class AlreadyResolved(DomainError):
    """The payment's case was resolved by an operator already; money moving again reopens it."""

    code = "ALREADY_RESOLVED"


class CardLimitExceeded(OnrampUnavailable):
    """The payment would take the customer's card purchases past a limit per 24 hours or per
    30 days (``OVPP_ONRAMP_CUSTOMER_LIMIT_*``): refused before any PaymentIntent exists. On
    the wire an ``OnrampUnavailable`` whose message names the limit and what is left of it."""

    code = "CARD_LIMIT_EXCEEDED"


class PaymentUnderWay(DomainError):
    """A card payment that can no longer be canceled: Stripe is processing it or has taken it
    (or its row is paid or later). Nothing was canceled; the payment goes through as usual."""

    code = "PAYMENT_UNDER_WAY"
