"""The root of every expected failure.

A ``DomainError`` carries a stable machine ``code`` (clients switch on it) and a ``message``
that is safe to show a user. Anything that is not a ``DomainError`` is unexpected: the API
masks it and logs it with the request id.
"""

from __future__ import annotations


class DomainError(Exception):
    code: str = "BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    @property
    def extensions(self) -> dict[str, object]:
        """What GraphQL clients see under ``errors[].extensions`` (graphql-core reads it)."""
        return {"code": self.code}


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class SignInUnavailable(DomainError):
    """The token could not be checked because its provider's keys could not be fetched: a
    passing outage, not a bad token. Clients retry later and keep their session."""

    code = "AUTH_UNAVAILABLE"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class ConfigurationError(DomainError):
    code = "CONFIGURATION"


class ChainUnavailable(DomainError):
    code = "CHAIN_UNAVAILABLE"


class InvalidInput(DomainError):
    code = "INVALID_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
