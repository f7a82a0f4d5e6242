"""Expected failures of the program server."""

from __future__ import annotations

from core.errors import DomainError


class RegistrationRefused(DomainError):
    """A VEN may not register: not provisioned (no ACTIVE enrollment names it), another VEN's
    ``venID``, or another certificate than the one it first registered with. Answered with
    OpenADR's 452 (not registered or authorized)."""

    code = "REGISTRATION_REFUSED"
