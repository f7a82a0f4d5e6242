"""Expected failures of enrollment."""

from __future__ import annotations

from core.errors import DomainError, InvalidInput
from registry_client.types import CapabilityCheck


class NotEligible(DomainError):
    code = "NOT_ELIGIBLE"

    def __init__(self, message: str, *, failing: tuple[CapabilityCheck, ...]) -> None:
        super().__init__(message)
        self.failing = failing


class CardPaymentUnavailable(DomainError):
    code = "CARD_PAYMENT_UNAVAILABLE"


class OtherUtility(InvalidInput):
    """The program, or the enrollment, is another utility's: a customer enrolls in, checks and
    leaves only their own utility's programs. Refused before anything is locked or charged."""


class AlreadyEnrolled(InvalidInput):
    """The device already has an enrollment in this program that is awaiting its fee,
    connecting, active or unenrolling: a second one would only revert on chain."""
