"""Idempotency keys and request fingerprints, shared by every value-moving mutation.

A client chooses a key; the same key with the same request returns the first result, and with
another request is refused. The backend's own keys live in namespaces (prefixes) that no client
key may enter, so the two can never collide on a unique (wallet, key) or (customer, key).
"""

from __future__ import annotations

import hashlib
import json

from core.errors import InvalidInput

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
"""Every key the backend makes starts with one of these; no client key may."""


def require_idempotency_key(key: str, *, limit: int = 255) -> None:
    """A client-chosen key of 1 to ``limit`` characters (shorter where the key is prefixed
    before it reaches Stripe's 255), outside the backend's own namespaces."""
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


def request_fingerprint(*parts: str) -> str:
    """What a request asked for, so a key reused for another request is caught."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
