"""The transfer hot path's shortcuts must not change what is accepted.

- ``AccessTokenValidator`` remembers verified tokens (``VerifiedTokens``): a remembered token
  is served without fetching keys or checking its signature again, but never once it has
  expired (``exp`` + leeway), never for more than five minutes, never after its issuer's key
  set changed, and never for any other token text.
- ``request_transfer`` reads the wallet's jobs in one statement (``_RECENT_JOBS``): the daily
  limit counts only the last 24 hours, while an open job counts as a pending debit whatever
  its age, and an idempotency key finds its transfer whatever its age.

The token tests drive a validator of their own against a test issuer of their own (real JWKS
over HTTP), so they can rotate keys and move the clock without touching the session's app;
one test checks the app's own validator through the API. The relayer tests go through the
API, per database backend.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import delete, update
from sqlmodel import select

import identity.tokens
from api.container import Services
from chain.address_book import AddressBook
from core.db import utc_now
from core.errors import Unauthenticated
from identity.principal import Principal
from identity.tokens import AccessTokenValidator, IssuerDirectory, JwksCache, TrustedIssuer
from relayer.keys import relayer_key_for
from relayer.models import RelayStatus, RelayTransaction, WalletPolicy
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer, b64url
from tests.support.transfers import quote, send
from tests.support.wallets import (
    ChainReader,
    Customer,
    FundedCustomer,
    fresh_address,
    wait_for_status,
)
from wallet.models import Wallet

OVPP = 10**18
USD = 10**6
LEEWAY = 30
VIEWER = "query { viewer { id wallet { address } } }"


# --- helpers: a validator of the test's own --------------------------------------------


class Clock:
    """A settable stand-in for ``time.time``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """A validator trusting one issuer, with counters of what it did."""

    validator: AccessTokenValidator
    issuer: TestIssuer
    jwks_fetches: list[str] = field(default_factory=list)
    verifications: list[str] = field(default_factory=list)


@pytest.fixture
def own_issuer() -> Iterator[TestIssuer]:
    """An issuer for one test: its keys can be rotated without affecting any other test."""
    issuer = TestIssuer(audience="https://hot-path.test")
    issuer.start()
    yield issuer
    issuer.stop()


@asynccontextmanager
async def harness_for(
    issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch, *, tenant_id: str = "tenant-hot-path"
) -> AsyncIterator[Harness]:
    """The production classes wired as ``Services.start`` wires them, with JWKS fetches counted
    on the HTTP client and every signature verification (``_verify``) counted."""
    jwks_url = f"{issuer.issuer}/jwks"
    fetches: list[str] = []

    async def count_jwks_fetches(request: httpx.Request) -> None:
        if str(request.url) == jwks_url:
            fetches.append(str(request.url))

    async with httpx.AsyncClient(
        timeout=10.0, event_hooks={"request": [count_jwks_fetches]}
    ) as http:

        async def trusted() -> list[TrustedIssuer]:
            return [TrustedIssuer(tenant_id, "hot-path", issuer.issuer, issuer.audience)]

        validator = AccessTokenValidator(
            issuers=IssuerDirectory(trusted),
            jwks=JwksCache(http, ttl_seconds=600),
            leeway_seconds=LEEWAY,
        )
        harness = Harness(validator=validator, issuer=issuer, jwks_fetches=fetches)
        count_verifications(monkeypatch, validator, harness.verifications)
        yield harness


def count_verifications(
    monkeypatch: pytest.MonkeyPatch, validator: AccessTokenValidator, calls: list[str]
) -> None:
    original = validator._verify

    async def counted(token: str) -> Any:
        calls.append(token)
        return await original(token)

    monkeypatch.setattr(validator, "_verify", counted)


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def new_key(kid: str) -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256"})


# --- remembered tokens ------------------------------------------------------------------


async def test_a_token_validated_twice_is_verified_and_its_keys_fetched_once(
    own_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with harness_for(own_issuer, monkeypatch) as h:
        token = own_issuer.mint(sub="remembered-subject", scope="wallet:read wallet:sign")
        first = await h.validator.validate(token)
        assert len(h.verifications) == 1
        assert len(h.jwks_fetches) == 1

        second = await h.validator.validate(token)
        third = await h.validator.validate(token)
        assert second == first and third == first
        assert first.subject == "remembered-subject"
        assert first.tenant_id == "tenant-hot-path"
        assert first.scopes == frozenset({"wallet:read", "wallet:sign"})
        assert len(h.verifications) == 1, "a remembered token is not verified again"
        assert len(h.jwks_fetches) == 1, "a remembered token does not fetch the JWKS"

        # Another token of the same issuer is verified (against the keys already held).
        other = await h.validator.validate(own_issuer.mint(sub="another-subject"))
        assert other.subject == "another-subject"
        assert len(h.verifications) == 2
        assert len(h.jwks_fetches) == 1


async def test_the_apps_validator_remembers_a_token_across_requests(
    client: httpx.AsyncClient,
    services: Services,
    test_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same through the API: the second request with a token checks nothing again."""
    verifications: list[str] = []
    count_verifications(monkeypatch, services.token_validator, verifications)
    jwks_url = f"{test_issuer.issuer}/jwks"
    fetches: list[str] = []

    async def count_jwks_fetches(request: httpx.Request) -> None:
        if str(request.url) == jwks_url:
            fetches.append(str(request.url))

    services.http.event_hooks["request"].append(count_jwks_fetches)
    try:
        token = test_issuer.mint(sub=f"app-remembered-{uuid.uuid4().hex[:10]}")
        first = await gql(client, VIEWER, token=token)
        assert "errors" not in first, first
        assert verifications == [token]
        fetched_for_first = len(fetches)

        second = await gql(client, VIEWER, token=token)
        assert "errors" not in second, second
        assert second["data"] == first["data"]
        assert verifications == [token], "the second request re-verified the token"
        assert len(fetches) == fetched_for_first, "the second request fetched the JWKS"
    finally:
        services.http.event_hooks["request"].remove(count_jwks_fetches)


async def test_a_rotated_key_set_makes_a_remembered_token_verify_again(
    own_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Key rotation: the issuer adds a key, and later drops the old one. A token arriving with
    an unknown ``kid`` makes the cache fetch the JWKS again (a new key set), after which a
    remembered token is verified again: accepted while its key is still published, refused
    once it is not."""
    monkeypatch.setattr(identity.tokens, "MINIMUM_REFETCH_INTERVAL_SECONDS", 0.0)
    old_key = own_issuer.signing_key
    async with harness_for(own_issuer, monkeypatch) as h:
        remembered = own_issuer.mint(sub="rotation-subject")
        principal = await h.validator.validate(remembered)
        await h.validator.validate(remembered)
        assert len(h.verifications) == 1 and len(h.jwks_fetches) == 1

        # Rotation, step 1: a second key is published next to the first.
        second_key = new_key("rotation-key-2")
        own_issuer.published_keys = [old_key, second_key]
        fresh = own_issuer.mint(key=second_key, sub="rotation-newcomer")
        assert (await h.validator.validate(fresh)).subject == "rotation-newcomer"
        assert len(h.jwks_fetches) == 2, "an unknown kid fetches the JWKS again"

        verified_before = len(h.verifications)
        assert await h.validator.validate(remembered) == principal
        assert h.verifications[verified_before:] == [remembered], (
            "a token remembered under the previous key set must be verified again"
        )
        # ... and is remembered again, under the new key set.
        await h.validator.validate(remembered)
        assert h.verifications[verified_before:] == [remembered]

        # Rotation, step 2: the first key is withdrawn.
        third_key = new_key("rotation-key-3")
        own_issuer.published_keys = [second_key, third_key]
        newest = own_issuer.mint(key=third_key, sub="rotation-newest")
        assert (await h.validator.validate(newest)).subject == "rotation-newest"
        assert len(h.jwks_fetches) >= 3

        verified_before = len(h.verifications)
        with pytest.raises(Unauthenticated):
            await h.validator.validate(remembered)
        assert h.verifications[verified_before:] == [remembered]
        with pytest.raises(Unauthenticated):  # and it stays refused
            await h.validator.validate(remembered)
        # A token signed by a key still published is unaffected.
        assert (await h.validator.validate(fresh)).subject == "rotation-newcomer"


async def test_a_remembered_token_is_refused_once_it_expires(
    own_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Remembered until ``exp`` + leeway and no longer: the same instant the signature check
    itself would start refusing it."""
    clock = Clock(float(int(time.time())))
    monkeypatch.setattr(time, "time", clock)  # the cache's timer and the claims check
    start = int(clock.now)
    async with harness_for(own_issuer, monkeypatch) as h:
        token = own_issuer.mint(sub="short-lived", iat=start, exp=start + 60)
        principal = await h.validator.validate(token)
        assert len(h.verifications) == 1

        clock.now = start + 60 + LEEWAY - 1  # past exp, within the leeway
        assert await h.validator.validate(token) == principal
        assert len(h.verifications) == 1, "still remembered within the leeway"

        clock.now = start + 60 + LEEWAY + 1
        with pytest.raises(Unauthenticated, match="expired"):
            await h.validator.validate(token)
        assert len(h.verifications) == 2, "an expired entry is not served"
        with pytest.raises(Unauthenticated, match="expired"):
            await h.validator.validate(token)
        assert len(h.verifications) == 3, "a refused token is not remembered"


async def test_a_token_is_remembered_for_at_most_five_minutes(
    own_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(float(int(time.time())))
    monkeypatch.setattr(time, "time", clock)
    start = int(clock.now)
    async with harness_for(own_issuer, monkeypatch) as h:
        token = own_issuer.mint(sub="long-lived", iat=start, exp=start + 3600)
        principal = await h.validator.validate(token)

        clock.now = start + 299
        assert await h.validator.validate(token) == principal
        assert len(h.verifications) == 1

        clock.now = start + 301
        assert await h.validator.validate(token) == principal
        assert len(h.verifications) == 2, "after 300 s the token is verified again"
        clock.now = start + 302
        assert await h.validator.validate(token) == principal
        assert len(h.verifications) == 2, "and remembered again from then"


async def test_a_different_token_text_is_never_served_from_the_cache(
    own_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same header and claims with a damaged signature, or the remembered signature under other
    claims: neither is the remembered text, both are verified, and both are refused."""
    async with harness_for(own_issuer, monkeypatch) as h:
        token = own_issuer.mint(sub="genuine-subject")
        principal = await h.validator.validate(token)
        header, payload, signature = token.split(".")

        damaged = bytearray(b64url_decode(signature))
        damaged[len(damaged) // 2] ^= 0x01
        bad_signature = f"{header}.{payload}.{b64url(bytes(damaged))}"
        assert bad_signature != token

        forged_claims = b64url_decode(payload).replace(b"genuine-subject", b"forged--subject")
        forged = f"{header}.{b64url(forged_claims)}.{signature}"
        assert forged != token

        for attempt in (bad_signature, forged):
            verified_before = len(h.verifications)
            with pytest.raises(Unauthenticated, match="signature"):
                await h.validator.validate(attempt)
            assert h.verifications[verified_before:] == [attempt]

        # The genuine token is still remembered, and the refused ones were not.
        verified_before = len(h.verifications)
        assert await h.validator.validate(token) == principal
        assert len(h.verifications) == verified_before
        with pytest.raises(Unauthenticated):
            await h.validator.validate(bad_signature)
        assert len(h.verifications) == verified_before + 1


async def test_a_huge_exp_is_accepted_or_refused_but_never_an_unexpected_error(
    own_issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON numbers have no size limit and joserfc accepts any int as a NumericDate; the
    cache's ``valid_until`` must not turn such a token into an unexpected error (the API
    would answer a masked 'Unexpected error' instead of UNAUTHENTICATED)."""
    async with harness_for(own_issuer, monkeypatch) as h:
        token = own_issuer.mint(sub="far-future", exp=10**400)
        try:
            principal: Principal | None = await h.validator.validate(token)
        except Unauthenticated:
            principal = None
        if principal is not None:
            assert principal.subject == "far-future"


# --- the wallet's jobs, read once ------------------------------------------------------


@dataclass
class Sent:
    result: dict[str, Any]
    quote_id: str
    key: str
    fields: dict[str, str]


async def quote_and_send(
    client: httpx.AsyncClient,
    customer: Customer,
    *,
    to: str,
    amount: str,
) -> Sent:
    """Quote and send ``amount`` OVPP to ``to``, the fee paid in stablecoin."""
    fields = {"token": "OVPP", "to": to, "amount": amount, "feeToken": "STABLECOIN"}
    quote_id = (await quote(client, customer.token, **fields))["id"]
    key = f"hot-path-{uuid.uuid4()}"
    return Sent(
        await send(client, customer.token, quote_id=quote_id, key=key, **fields),
        quote_id,
        key,
        fields,
    )


async def wallet_of(services: Services, customer: Customer) -> Wallet:
    async with services.db.session() as session:
        statement = select(Wallet).where(Wallet.address == customer.address)
        return (await session.execute(statement)).scalar_one()


async def set_daily_limit(services: Services, wallet: Wallet, limit: int) -> None:
    async with services.db.session() as session:
        session.add(WalletPolicy(wallet_id=wallet.id, token="OVPP", daily_limit=limit))


async def backdate(services: Services, job_id: str, *, hours: float) -> None:
    async with services.db.session() as session:
        result = await session.execute(
            update(RelayTransaction)
            .where(RelayTransaction.id == job_id)
            .values(created_at=utc_now() - timedelta(hours=hours))
        )
        assert result.rowcount == 1


async def test_the_daily_limit_counts_only_the_last_24_hours(
    client: httpx.AsyncClient,
    relayer: object,
    services: Services,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    customer = await funded_customer(ovpp=20 * OVPP, stablecoin=10 * USD)
    wallet = await wallet_of(services, customer)
    await set_daily_limit(services, wallet, 4 * OVPP)
    to = fresh_address()

    earlier = await quote_and_send(client, customer, to=to, amount="3")
    assert earlier.result["__typename"] == "Transaction", earlier.result
    assert (await wait_for_status(client, customer.token, earlier.result["id"]))[
        "status"
    ] == "CONFIRMED"

    # 23 hours ago: inside the window, so 3 + 3 > 4.
    await backdate(services, earlier.result["id"], hours=23)
    refused = await quote_and_send(client, customer, to=to, amount="3")
    assert refused.result["__typename"] == "PolicyViolation", refused.result
    assert refused.result["rule"] == "DAILY_LIMIT"
    assert "(3 sent in the last 24 hours)" in refused.result["message"]

    # 25 hours ago: outside it, so the same transfer is within the limit.
    await backdate(services, earlier.result["id"], hours=25)
    accepted = await quote_and_send(client, customer, to=to, amount="3")
    assert accepted.result["__typename"] == "Transaction", accepted.result

    # The old transfer's idempotency key still finds it, whatever its age.
    replay = await send(
        client, customer.token, quote_id=earlier.quote_id, key=earlier.key, **earlier.fields
    )
    assert replay["__typename"] == "Transaction", replay
    assert replay["id"] == earlier.result["id"] and replay["status"] == "CONFIRMED"

    # The quote just used cannot be used again under another key.
    reused = await send(client, customer.token, quote_id=accepted.quote_id, **accepted.fields)
    assert reused["__typename"] == "InvalidInput" and reused["field"] == "quoteId", reused

    # The new transfer is inside the window: 3 + 2 > 4, but 3 + 1 = 4 is allowed.
    over = await quote_and_send(client, customer, to=to, amount="2")
    assert over.result["__typename"] == "PolicyViolation", over.result
    assert over.result["rule"] == "DAILY_LIMIT"
    assert "(3 sent in the last 24 hours)" in over.result["message"]
    exact = await quote_and_send(client, customer, to=to, amount="1")
    assert exact.result["__typename"] == "Transaction", exact.result

    for sent in (accepted, exact):  # leave nothing in flight for the tests that follow
        final = await wait_for_status(client, customer.token, sent.result["id"])
        assert final["status"] == "CONFIRMED", final
    assert chain.ovpp_of(to) == 7 * OVPP
    assert chain.ovpp_of(customer.address) == 13 * OVPP


async def test_an_open_job_older_than_a_day_still_counts_as_a_pending_debit(
    client: httpx.AsyncClient,
    relayer: object,
    services: Services,
    contracts: AddressBook,
    chain: ChainReader,
    funded_customer: FundedCustomer,
) -> None:
    """A job submitted two days ago and still without a receipt has not taken its 8 OVPP from
    the chain balance yet: of 10 OVPP only 2 are available. It is outside the daily window
    (with a daily limit of 7, a transfer of 5 is not refused for it), but not outside the
    funds check."""
    customer = await funded_customer(ovpp=10 * OVPP, stablecoin=10 * USD)
    wallet = await wallet_of(services, customer)
    await set_daily_limit(services, wallet, 7 * OVPP)
    two_days_ago = utc_now() - timedelta(days=2)
    async with services.db.session() as session:
        pending = RelayTransaction(
            wallet_id=wallet.id,
            customer_id=wallet.customer_id,
            idempotency_key=f"old-open-{uuid.uuid4()}",
            request_fingerprint="0" * 64,
            token="OVPP",
            token_address=contracts.ovpp_token,
            to_address=fresh_address(),
            amount=8 * OVPP,
            fee_token="STABLECOIN",
            fee_amount=USD,
            forwarder_nonce=0,
            forward_requests=[],
            gas_limit=200_000,
            relayer_key_id=await relayer_key_for(session, wallet.id),
            # A hash no receipt exists for, and no submitted_at: the worker finds nothing to
            # record and nothing to bump, so the job stays open for the whole test.
            tx_hash="0x" + uuid.uuid4().hex + uuid.uuid4().hex,
            status=RelayStatus.SUBMITTED,
            created_at=two_days_ago,
            updated_at=two_days_ago,
        )
        session.add(pending)
    try:
        to = fresh_address()
        refused = await quote_and_send(client, customer, to=to, amount="5")
        assert refused.result["__typename"] == "InsufficientFunds", refused.result
        assert refused.result["token"]["symbol"] == "OVPP"
        assert refused.result["required"] == "5"
        assert refused.result["available"] == "2"

        # A transfer the 2 available OVPP cover goes through, fee (in USDC) and all.
        small = await quote_and_send(client, customer, to=to, amount="2")
        assert small.result["__typename"] == "Transaction", small.result
        final = await wait_for_status(client, customer.token, small.result["id"])
        assert final["status"] == "CONFIRMED", final
        assert chain.ovpp_of(customer.address) == 8 * OVPP

        # Once the old job is no longer open, its 8 OVPP are free again: 5 of the 8 fit (and
        # 2 + 5 is within the daily limit of 7).
        async with services.db.session() as session:
            await session.execute(
                update(RelayTransaction)
                .where(RelayTransaction.id == pending.id)
                .values(status=RelayStatus.FAILED, error="test: never sent")
            )
        freed = await quote_and_send(client, customer, to=to, amount="5")
        assert freed.result["__typename"] == "Transaction", freed.result
        final = await wait_for_status(client, customer.token, freed.result["id"])
        assert final["status"] == "CONFIRMED", final
        assert chain.ovpp_of(to) == 7 * OVPP
    finally:
        async with services.db.session() as session:
            await session.execute(delete(RelayTransaction).where(RelayTransaction.id == pending.id))
