"""A sign-in provider whose discovery and JWKS endpoints hang: verifications are answered from
the last good key set at once, an unknown ``kid`` is an outage (``AUTH_UNAVAILABLE``) within
about a second, and the refresh is retried in the background, not once per request. A provider
whose discovery document is malformed (a ``jwks_uri`` that is no URL, not an object) is a failed
fetch like any other: the last good set serves, nothing escapes as an unexpected error.

The validator is built here around an issuer of the test's own (no database), with a short
key-set TTL and refetch interval, so the test does not wait minutes for a key set to age."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

import identity.tokens
from core.errors import DomainError
from identity.principal import Principal
from identity.tokens import AccessTokenValidator, IssuerDirectory, JwksCache, TrustedIssuer
from tests.conftest import AUDIENCE
from tests.support.issuer import TestIssuer

TTL_SECONDS = 0.5
REFETCH_INTERVAL_SECONDS = 0.5
PROMPT_SECONDS = 1.5  # "within about a second": the 1 s wait plus a loaded machine's slack


class Fetches:
    """The discovery requests the validator's HTTP client sent (one per fetch attempt)."""

    def __init__(self, issuer: TestIssuer) -> None:
        self.url = f"{issuer.issuer}/.well-known/openid-configuration"
        self.count = 0

    async def __call__(self, request: httpx.Request) -> None:
        if str(request.url) == self.url:
            self.count += 1


@pytest.fixture
def issuer() -> Iterator[TestIssuer]:
    own = TestIssuer(audience=AUDIENCE)
    own.start()
    yield own
    own.stop()


@pytest.fixture
async def validator(
    issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AccessTokenValidator, Fetches]]:
    monkeypatch.setattr(
        identity.tokens, "MINIMUM_REFETCH_INTERVAL_SECONDS", REFETCH_INTERVAL_SECONDS
    )
    trusted = TrustedIssuer(
        tenant_id="outage-tenant",
        tenant_slug="outage-utility",
        issuer=issuer.issuer,
        audience=issuer.audience,
    )

    async def trusted_issuers() -> list[TrustedIssuer]:
        return [trusted]

    fetches = Fetches(issuer)
    async with httpx.AsyncClient(timeout=10.0, event_hooks={"request": [fetches]}) as http:
        yield (
            AccessTokenValidator(
                issuers=IssuerDirectory(trusted_issuers),
                jwks=JwksCache(http, ttl_seconds=TTL_SECONDS),
            ),
            fetches,
        )
        issuer.hanging = False  # the fetch left hanging ends before the client closes
        await asyncio.sleep(0.1)


async def timed(validator: AccessTokenValidator, token: str) -> tuple[object, float]:
    """The principal (or the typed error) and how long the verification took."""
    started = time.monotonic()
    try:
        outcome: object = await validator.validate(token)
    except DomainError as error:
        outcome = error
    return outcome, time.monotonic() - started


async def test_a_hanging_provider_is_served_from_the_last_good_key_set_without_waiting(
    issuer: TestIssuer, validator: tuple[AccessTokenValidator, Fetches]
) -> None:
    checker, fetches = validator
    assert isinstance(await checker.validate(issuer.mint()), Principal)
    assert fetches.count == 1
    await asyncio.sleep(max(TTL_SECONDS, REFETCH_INTERVAL_SECONDS))  # the set is past its TTL

    issuer.hanging = True
    outcomes = await asyncio.gather(*(timed(checker, issuer.mint()) for _ in range(20)))
    assert all(isinstance(principal, Principal) for principal, _ in outcomes), outcomes
    assert max(seconds for _, seconds in outcomes) < PROMPT_SECONDS, outcomes
    assert fetches.count == 2, "one background refresh for the whole burst"

    # Still down: later verifications keep using the held set without starting new fetches
    # while one is in flight.
    principal, seconds = await timed(checker, issuer.mint())
    assert isinstance(principal, Principal) and seconds < PROMPT_SECONDS
    assert fetches.count == 2

    # The provider is back: the refresh lands, and a key published meanwhile is accepted.
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rotated-key-2", "alg": "RS256"})
    issuer.published_keys.append(rotated)
    issuer.hanging = False
    await asyncio.sleep(REFETCH_INTERVAL_SECONDS)
    principal, seconds = await timed(checker, issuer.mint(key=rotated))
    assert isinstance(principal, Principal), principal
    assert seconds < PROMPT_SECONDS


async def test_an_unknown_kid_while_the_provider_hangs_is_an_outage_within_a_second(
    issuer: TestIssuer, validator: tuple[AccessTokenValidator, Fetches]
) -> None:
    checker, fetches = validator
    assert isinstance(await checker.validate(issuer.mint()), Principal)
    await asyncio.sleep(REFETCH_INTERVAL_SECONDS)

    issuer.hanging = True
    unknown = RSAKey.generate_key(2048, parameters={"kid": "not-yet-seen", "alg": "RS256"})
    outcomes = await asyncio.gather(*(timed(checker, issuer.mint(key=unknown)) for _ in range(5)))
    for error, seconds in outcomes:
        assert isinstance(error, DomainError) and error.code == "AUTH_UNAVAILABLE", error
        assert seconds < PROMPT_SECONDS
    assert fetches.count == 2, "the burst shares one refetch"

    # Meanwhile a token signed by the known key is verified at once from the held set.
    principal, seconds = await timed(checker, issuer.mint())
    assert isinstance(principal, Principal) and seconds < PROMPT_SECONDS


MALFORMED = [
    pytest.param(lambda issuer: {"issuer": issuer, "jwks_uri": "http://[::1"}, id="invalid-url"),
    pytest.param(lambda issuer: [issuer], id="not-an-object"),
]


@pytest.mark.parametrize("document", MALFORMED)
async def test_a_malformed_discovery_document_is_a_failed_fetch_not_an_unexpected_error(
    issuer: TestIssuer, validator: tuple[AccessTokenValidator, Fetches], document: Any
) -> None:
    checker, fetches = validator
    assert isinstance(await checker.validate(issuer.mint()), Principal)
    await asyncio.sleep(max(TTL_SECONDS, REFETCH_INTERVAL_SECONDS))  # the set is past its TTL

    issuer.discovery_document = document(issuer.issuer)
    for _ in range(3):  # the held set serves; the failed refresh holds off the next ones
        assert isinstance(await checker.validate(issuer.mint()), Principal)
        await asyncio.sleep(0.05)
    assert fetches.count == 2
    await asyncio.sleep(REFETCH_INTERVAL_SECONDS)
    unknown = RSAKey.generate_key(2048, parameters={"kid": "never-fetched", "alg": "RS256"})
    error, _ = await timed(checker, issuer.mint(key=unknown))
    assert isinstance(error, DomainError) and error.code == "AUTH_UNAVAILABLE", error


@pytest.mark.parametrize("document", MALFORMED)
async def test_a_malformed_discovery_document_on_the_first_fetch_is_auth_unavailable(
    issuer: TestIssuer, validator: tuple[AccessTokenValidator, Fetches], document: Any
) -> None:
    checker, _ = validator
    issuer.discovery_document = document(issuer.issuer)
    error, _ = await timed(checker, issuer.mint())
    assert isinstance(error, DomainError) and error.code == "AUTH_UNAVAILABLE", error
