"""Expected failures of enrollment."""

from __future__ import annotations

from core.errors import DomainError
from registry_client.types import CapabilityCheck


class NotEligible(DomainError):
    code = "NOT_ELIGIBLE"

    def __init__(self, message: str, *, failing: tuple[CapabilityCheck, ...]) -> None:
        super().__init__(message)
        self.failing = failing


class CardPaymentUnavailable(DomainError):
    code = "CARD_PAYMENT_UNAVAILABLE"
