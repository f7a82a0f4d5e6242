"""Expected failures of the program server."""

from __future__ import annotations

from datetime import datetime

from core.errors import DomainError


class RegistrationRefused(DomainError):
    """A VEN may not register: not provisioned (no ACTIVE enrollment names it), another VEN's
    ``venID``, or another certificate than the one it first registered with. Answered with
    OpenADR's 452 (not registered or authorized)."""

    code = "REGISTRATION_REFUSED"


class EventAlreadyStarted(DomainError):
    """A customer may opt out of an event only before it starts."""

    code = "EVENT_ALREADY_STARTED"

    def __init__(self, message: str, *, start: datetime) -> None:
        super().__init__(message)
        self.start = start
