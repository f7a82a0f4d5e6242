"""Expected failures of a relayed action. The API returns each as a typed union member."""

from __future__ import annotations

from core.errors import DomainError


class InvalidInput(DomainError):
    code = "INVALID_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InsufficientFunds(DomainError):
    code = "INSUFFICIENT_FUNDS"

    def __init__(self, *, token: str, required: int, available: int, decimals: int) -> None:
        from chain.tokens import format_units

        super().__init__(
            f"not enough {token}: {format_units(required, decimals)} needed, "
            f"{format_units(max(available, 0), decimals)} available"
        )
        self.token, self.required, self.available, self.decimals = (
            token,
            required,
            available,
            decimals,
        )


class PolicyViolation(DomainError):
    code = "POLICY_VIOLATION"

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


class QuoteExpired(DomainError):
    code = "QUOTE_EXPIRED"


class SponsorRefused(DomainError):
    code = "SPONSOR_REFUSED"

    def __init__(self, message: str, *, reason: str, sponsor_name: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.sponsor_name = reason, sponsor_name


NONCE_FILL_KEY_PREFIX = "nonce-fill:"  # a refused job's filler, on the job's wallet
ENROLL_KEY_PREFIX = "enroll:"  # an enrollment's relayed call, on the payer's wallet
UNENROLL_KEY_PREFIX = "unenroll:"  # an unenrollment's relayed call, on the customer's wallet
CARD_ENROLLMENT_PAYMENT_KEY_PREFIX = "enrollment:"  # a card-paid enrollment's onramp payment
ONRAMP_DELIVERY_KEY_PREFIX = "onramp-delivery:"  # a card purchase's delivery, on the treasury
RESERVED_IDEMPOTENCY_KEY_PREFIXES = (
    NONCE_FILL_KEY_PREFIX,
    ENROLL_KEY_PREFIX,
    UNENROLL_KEY_PREFIX,
    CARD_ENROLLMENT_PAYMENT_KEY_PREFIX,
    ONRAMP_DELIVERY_KEY_PREFIX,
)
"""The backend's own idempotency keys share the unique (wallet, key) of relayed transactions
and (customer, key) of onramp payments with the keys clients choose; every one it makes starts
with one of these prefixes, and no client key may, so the two can never collide."""


def require_idempotency_key(key: str, *, limit: int = 255) -> None:
    """Every value-moving mutation takes a client-chosen key of 1 to ``limit`` characters
    (a shorter limit where the key is prefixed before it reaches Stripe's 255), outside the
    namespaces of the backend's own keys (``RESERVED_IDEMPOTENCY_KEY_PREFIXES``)."""
    if not 1 <= len(key) <= limit:
        raise InvalidInput(
            f"the idempotency key must be 1 to {limit} characters", field="idempotencyKey"
        )
    if key.startswith(RESERVED_IDEMPOTENCY_KEY_PREFIXES):
        raise InvalidInput(
            "idempotency keys starting with "
            + ", ".join(repr(prefix) for prefix in RESERVED_IDEMPOTENCY_KEY_PREFIXES)
            + " are reserved: choose another key",
            field="idempotencyKey",
        )
