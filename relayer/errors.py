"""Expected failures of a relayed action. The API returns each as a typed union member."""

from __future__ import annotations

from core.errors import DomainError


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
