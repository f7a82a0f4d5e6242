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


class FeePaymentUnderWay(InvalidInput):
    """``unenroll`` of a card-paid enrollment whose fee payment Stripe is processing or has
    taken: it can no longer be canceled, so nothing changed; the enrollment connects once the
    OVPP it bought arrives, and can be unenrolled once ACTIVE."""

    code = "FEE_PAYMENT_UNDER_WAY"


class RegistryChangeUnderWay(DomainError):
    """Another change of this utility's registry record or programs has not landed yet:
    changes land one at a time, in order. Ask again once it is CONFIRMED or FAILED."""

    code = "REGISTRY_CHANGE_UNDER_WAY"


class RegistryChangesLimited(DomainError):
    """The utility asked for more registry changes in the last hour than its limit allows
    (``OVPP_ADMIN_REGISTRY_CHANGES_PER_HOUR``); the operator pays their gas."""

    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "retryAfterSeconds": self.retry_after_seconds}
