"""Expected failures as typed results: the wire types of a mutation's failures, and the one
decorator that turns a domain error into the member of the mutation's result union."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar, get_args

import strawberry

from api.graphql.common import TokenType
from chain.tokens import TokenInfo, format_units
from core.errors import DomainError
from core.errors import InvalidInput as InvalidInputError
from onramp.errors import OnrampUnavailable as OnrampUnavailableError
from programs import errors as program_errors
from programs.vtn import errors as vtn_errors
from registry_client.types import CapabilityCheck as CheckRecord
from relayer import errors as relayer_errors


@strawberry.type(description="The wallet holds too little of a token (pending transfers count).")
class InsufficientFunds:
    message: str
    token: TokenType
    required: str
    available: str


@strawberry.type(description="A wallet policy forbids this (daily limit, allowed destinations).")
class PolicyViolation:
    message: str
    rule: str


@strawberry.type(description="The fee quote expired: ask for a new one.")
class QuoteExpired:
    message: str


@strawberry.type(description="The sponsoring utility will not pay; nothing was charged or sent.")
class SponsorRefused:
    message: str
    reason: str = strawberry.field(
        description="NOT_ELIGIBLE, PER_TRANSACTION_CAP, CUSTOMER_DAILY_CAP, PERIOD_CAP or "
        "BUDGET_EXHAUSTED."
    )
    sponsor_name: str | None


@strawberry.type(description="The input is not acceptable; `field` names the culprit.")
class InvalidInput:
    message: str
    field: str | None


@strawberry.type(description="One capability check of the routing, with its reason.")
class CapabilityCheck:
    name: str
    passed: bool
    reason: str

    @classmethod
    def from_record(cls, record: CheckRecord) -> CapabilityCheck:
        return cls(name=record.name, passed=record.passed, reason=record.reason)


@strawberry.type(description="The device cannot join: every failing check is listed.")
class NotEligible:
    message: str
    failing_checks: list[CapabilityCheck]


@strawberry.type(description="Card payments are not configured on this server.")
class OnrampUnavailable:
    message: str


@strawberry.type(description="The event has started: it can no longer be declined.")
class EventAlreadyStarted:
    message: str
    start: datetime


def _insufficient_funds(
    error: relayer_errors.InsufficientFunds, tokens: list[TokenInfo]
) -> InsufficientFunds:
    return InsufficientFunds(
        message=error.message,
        token=next(TokenType.from_info(t) for t in tokens if t.symbol == error.token),
        required=format_units(error.required, error.decimals),
        available=format_units(max(error.available, 0), error.decimals),
    )


_FAILURES: dict[type[DomainError], Callable[[Any, list[TokenInfo]], object]] = {
    relayer_errors.InsufficientFunds: _insufficient_funds,
    relayer_errors.PolicyViolation: lambda e, _: PolicyViolation(message=e.message, rule=e.rule),
    relayer_errors.QuoteExpired: lambda e, _: QuoteExpired(message=e.message),
    relayer_errors.SponsorRefused: lambda e, _: SponsorRefused(
        message=e.message, reason=e.reason, sponsor_name=e.sponsor_name
    ),
    InvalidInputError: lambda e, _: InvalidInput(message=e.message, field=e.field),
    # Paying by card needs the onramp: without it the payment method is the culprit.
    program_errors.CardPaymentUnavailable: lambda e, _: InvalidInput(
        message=e.message, field="paymentMethod"
    ),
    program_errors.NotEligible: lambda e, _: NotEligible(
        message=e.message, failing_checks=[CapabilityCheck.from_record(c) for c in e.failing]
    ),
    OnrampUnavailableError: lambda e, _: OnrampUnavailable(message=e.message),
    vtn_errors.EventAlreadyStarted: lambda e, _: EventAlreadyStarted(
        message=e.message, start=e.start
    ),
}
"""Each expected domain error's wire type (looked up along the error's class hierarchy)."""


def failure_of(error: DomainError, *, tokens: list[TokenInfo], members: tuple[type, ...]) -> object:
    """The typed result for ``error`` if it is one of ``members``; otherwise ``None``."""
    for kind in type(error).__mro__:
        build = _FAILURES.get(kind)
        if build is not None:
            failure = build(error, tokens)
            return failure if isinstance(failure, members) else None
    return None


Resolver = TypeVar("Resolver", bound=Callable[..., Awaitable[Any]])


def typed_failures(result: object) -> Callable[[Resolver], Resolver]:
    """Decorates a mutation resolver whose answer is the union ``result``: a domain error
    raised in it rolls back the request's writes (nothing may be charged or taken), then comes
    back as the union's member for it, or is raised on when the union has none."""
    (union, *_) = get_args(result)
    members = get_args(union)

    def decorate(resolver: Resolver) -> Resolver:
        @functools.wraps(resolver)
        async def resolve(info: Any, **arguments: Any) -> Any:
            try:
                return await resolver(info, **arguments)
            except DomainError as error:
                await info.context.rollback()
                tokens = info.context.services.chain.tokens
                failure = failure_of(error, tokens=tokens, members=members)
                if failure is None:
                    raise
                return failure

        return resolve  # type: ignore[return-value]

    return decorate
