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
