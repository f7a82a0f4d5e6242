"""Every way an access token can be wrong, sent through the real app.

Each rejection must come back as a GraphQL error with a typed code (never a 500, never a
masked error), with ``data`` null, and must not provision anything for the token's subject.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

import identity.tokens
from api.container import Services
from devsupport.oidc_login import dev_subject, obtain_access_token
from devsupport.oidc_provider import DevOpenIDProvider
from tests.conftest import AUDIENCE
from tests.support.graphql import error_codes
from tests.support.issuer import TestIssuer, b64url
from tests.support.rows import (
    customer_count,
    customers_with_subject,
    tenant_slug,
    wallets_of_subject,
)

VIEWER = "query { viewer { id email wallet { address } } }"
UNTRUSTED_ISSUER = "http://127.0.0.1:1/untrusted"
GUARD_SECONDS_IN_TEST = 0.5


async def ask_viewer(client: httpx.AsyncClient, *, authorization: str | None) -> dict[str, Any]:
    """POST the viewer query with this exact Authorization header (or none)."""
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await client.post("/graphql", json={"query": VIEWER}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def assert_rejected(
    client: httpx.AsyncClient,
    services: Services,
    *,
    authorization: str | None,
    code: str = "UNAUTHENTICATED",
    subjects: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The request fails with ``code``, shows no data, and provisions nothing.

    Without a subject to look up, "nothing" is checked as "no new customer row at all"
    (tests run one at a time, so nothing else is provisioning meanwhile).
    """
    customers_before = await customer_count(services.db)
    body = await ask_viewer(client, authorization=authorization)
    assert error_codes(body) == [code], body
    assert body["data"] is None, body
    for subject in subjects:
        assert await customers_with_subject(services.db, subject) == []
        assert await wallets_of_subject(services.db, subject) == []
    assert await customer_count(services.db) == customers_before
    return body


def bearer(token: str) -> str:
    return f"Bearer {token}"


def json_segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def payload_of(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# --- the Authorization header itself ----------------------------------------------------


async def test_no_authorization_header_is_unauthenticated(client, services: Services) -> None:
    await assert_rejected(client, services, authorization=None)


async def test_a_non_bearer_scheme_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = "basic-scheme-subject"
    token = test_issuer.mint(sub=subject)
    await assert_rejected(client, services, authorization=f"Basic {token}", subjects=(subject,))
    await assert_rejected(
        client, services, authorization="Basic dXNlcjpwYXNzd29yZA==", subjects=(subject,)
    )


async def test_a_garbage_token_is_unauthenticated(client, services: Services) -> None:
    await assert_rejected(client, services, authorization=bearer("not-a-jwt"))
    await assert_rejected(client, services, authorization=bearer("a.b.c"))
    await assert_rejected(client, services, authorization=bearer("%%%.***.!!!"))


# --- time -------------------------------------------------------------------------------


async def test_an_expired_token_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    now = int(time.time())
    subject = "expired-subject"
    # 60 s ago is well past the 30 s leeway.
    token = test_issuer.mint(sub=subject, iat=now - 660, exp=now - 60)
    await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))


async def test_a_token_not_valid_yet_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    now = int(time.time())
    subject = "not-yet-valid-subject"
    token = test_issuer.mint(sub=subject, nbf=now + 300, exp=now + 900)
    await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))


# --- who issued it ----------------------------------------------------------------------


async def test_a_token_from_an_untrusted_issuer_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = "untrusted-issuer-subject"
    token = test_issuer.mint(sub=subject, iss=UNTRUSTED_ISSUER)
    await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))


async def test_a_token_naming_another_trusted_utility_but_signed_by_this_one_is_refused(
    client, services: Services, test_issuer: TestIssuer, other_issuer: TestIssuer
) -> None:
    """Utility A must not be able to sign in utility B's customers: the key is looked up in the
    JWKS of the issuer the token names, and A's key is not in B's (even where the kids clash,
    as they do here: both test issuers call their key ``test-key-1``)."""
    subject = "cross-tenant-forgery-subject"
    token = test_issuer.mint(sub=subject, iss=other_issuer.issuer, aud=other_issuer.audience)
    await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))


async def test_a_token_for_another_audience_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = "wrong-audience-subject"
    token = test_issuer.mint(sub=subject, aud="https://some-other-api.test")
    await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))


# --- the signature ----------------------------------------------------------------------


async def test_an_unsigned_alg_none_token_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = "alg-none-subject"
    header = json_segment({"alg": "none", "typ": "at+jwt"})
    payload = json_segment(test_issuer.claims(sub=subject))
    await assert_rejected(
        client, services, authorization=bearer(f"{header}.{payload}."), subjects=(subject,)
    )


async def test_hs256_keyed_with_the_issuers_public_key_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    """The key-confusion attack: anyone can fetch the public key, so an HMAC keyed with it
    proves nothing. Tried with both the PEM and the JWK text, the usual forms a confused
    verifier would feed to HMAC."""
    subject = "hs256-confusion-subject"
    public_key = test_issuer.signing_key
    secrets = [
        public_key.as_pem(private=False),
        json.dumps(public_key.as_dict(private=False)).encode(),
    ]
    for secret in secrets:
        header = json_segment({"alg": "HS256", "typ": "at+jwt", "kid": public_key.kid})
        payload = json_segment(test_issuer.claims(sub=subject))
        signing_input = f"{header}.{payload}".encode()
        signature = b64url(hmac.new(secret, signing_input, hashlib.sha256).digest())
        await assert_rejected(
            client,
            services,
            authorization=bearer(f"{header}.{payload}.{signature}"),
            subjects=(subject,),
        )


async def test_a_tampered_payload_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    signed_subject = "tamper-original-subject"
    forged_subject = "tamper-forged-subject"
    header, _payload, signature = test_issuer.mint(sub=signed_subject).split(".")
    forged_payload = json_segment(test_issuer.claims(sub=forged_subject))
    await assert_rejected(
        client,
        services,
        authorization=bearer(f"{header}.{forged_payload}.{signature}"),
        subjects=(signed_subject, forged_subject),
    )


async def test_an_unknown_kid_refetches_the_jwks_once_and_accepts_a_key_published_later(
    client,
    services: Services,
    test_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Key rotation without a hammer: a burst of tokens with an unknown ``kid`` costs one JWKS
    fetch; within the refetch guard nothing is fetched again (so a key published meanwhile is
    not seen yet); after it, the newly published key is fetched and accepted.

    The guard (10 s in production) is shortened so the test does not sleep for it."""
    monkeypatch.setattr(identity.tokens, "MINIMUM_REFETCH_INTERVAL_SECONDS", GUARD_SECONDS_IN_TEST)
    rotated_key = RSAKey.generate_key(2048, parameters={"kid": "rotated-key-2", "alg": "RS256"})
    subject = f"rotated-key-subject-{time.monotonic_ns()}"
    token = test_issuer.mint(key=rotated_key, sub=subject)
    jwks_url = f"{test_issuer.issuer}/jwks"
    jwks_fetches: list[str] = []

    async def count_jwks_fetches(request: httpx.Request) -> None:
        if str(request.url) == jwks_url:
            jwks_fetches.append(str(request.url))

    services.http.event_hooks["request"].append(count_jwks_fetches)
    try:
        # Whatever fetched this issuer's keys before is now outside the guard.
        await asyncio.sleep(GUARD_SECONDS_IN_TEST)
        burst = await asyncio.gather(
            *(ask_viewer(client, authorization=bearer(token)) for _ in range(5))
        )
        assert [error_codes(body) for body in burst] == [["UNAUTHENTICATED"]] * 5
        assert len(jwks_fetches) == 1, "an unknown kid re-fetches the JWKS exactly once"

        test_issuer.published_keys.append(rotated_key)
        await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))
        assert len(jwks_fetches) == 1, "within the guard the JWKS is not fetched again"

        await asyncio.sleep(GUARD_SECONDS_IN_TEST)
        accepted = await ask_viewer(client, authorization=bearer(token))
        assert "errors" not in accepted, accepted
        assert len(jwks_fetches) == 2
        assert len(await wallets_of_subject(services.db, subject)) == 1
    finally:
        services.http.event_hooks["request"].remove(count_jwks_fetches)
        if rotated_key in test_issuer.published_keys:
            test_issuer.published_keys.remove(rotated_key)


async def test_a_provider_whose_keys_cannot_be_fetched_is_an_outage_not_a_bad_token(
    client,
    services: Services,
    other_issuer: TestIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first token of a trusted utility arrives while its provider cannot be reached:
    AUTH_UNAVAILABLE, so a client tries again later instead of throwing away its session;
    once the provider answers, the same token is accepted."""
    subject = f"provider-outage-subject-{time.monotonic_ns()}"
    token = other_issuer.mint(sub=subject)
    # Never fetched yet, as on the first sign-in after a start (other tests may have).
    monkeypatch.delitem(services.token_validator._jwks._keys, other_issuer.issuer, raising=False)

    async def provider_down(request: httpx.Request) -> None:
        if str(request.url).startswith(other_issuer.issuer):
            raise httpx.ConnectError("connection refused", request=request)

    services.http.event_hooks["request"].append(provider_down)
    try:
        body = await ask_viewer(client, authorization=bearer(token))
    finally:
        services.http.event_hooks["request"].remove(provider_down)
    assert error_codes(body) == ["AUTH_UNAVAILABLE"], body
    assert await wallets_of_subject(services.db, subject) == []

    accepted = await ask_viewer(client, authorization=bearer(token))
    assert "errors" not in accepted, accepted


# --- what kind of token, and what it says -----------------------------------------------


async def test_an_id_token_typed_jwt_is_not_an_access_token(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = "typ-jwt-subject"
    token = test_issuer.mint(sub=subject, header={"typ": "JWT"})
    await assert_rejected(client, services, authorization=bearer(token), subjects=(subject,))


async def test_a_token_without_sub_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    token = test_issuer.mint(sub=None)
    assert "sub" not in payload_of(token)
    await assert_rejected(client, services, authorization=bearer(token))


async def test_a_real_token_without_wallet_read_is_forbidden(
    client, services: Services, oidc: DevOpenIDProvider, backend: str
) -> None:
    email = f"no-read-scope-{backend}@example.com"
    token = await obtain_access_token(
        issuer=oidc.issuer, email=email, scope="openid wallet:sign", resource=AUDIENCE
    )
    assert "wallet:read" not in payload_of(token)["scope"].split()
    body = await assert_rejected(
        client,
        services,
        authorization=bearer(token),
        code="FORBIDDEN",
        subjects=(dev_subject(email),),
    )
    assert "wallet:read" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "subject", ["s" * 256, "nul\x00byte"], ids=["longer-than-255", "with-a-nul-byte"]
)
async def test_a_sub_no_customer_row_can_hold_is_unauthenticated(
    client, services: Services, test_issuer: TestIssuer, subject: str
) -> None:
    """OpenID Connect caps ``sub`` at 255 characters, and PostgreSQL text cannot hold NUL: such
    a token, however well signed, is refused rather than failing as an unexpected error."""
    token = test_issuer.mint(sub=subject)
    await assert_rejected(client, services, authorization=bearer(token))


@pytest.mark.parametrize(
    "email",
    ["e" * 320 + "@example.com", "nul\x00byte@example.com"],
    ids=["longer-than-the-column", "with-a-nul-byte"],
)
async def test_an_email_no_customer_row_can_hold_is_left_out(
    client, services: Services, test_issuer: TestIssuer, email: str
) -> None:
    """The email is informational: one the table cannot hold does not lock the customer out."""
    subject = f"unstorable-email-subject-{time.monotonic_ns()}"
    body = await ask_viewer(
        client, authorization=bearer(test_issuer.mint(sub=subject, email=email))
    )
    assert "errors" not in body, body
    assert body["data"]["viewer"]["email"] is None
    [customer] = await customers_with_subject(services.db, subject)
    assert customer.email is None


async def test_a_sub_of_exactly_255_characters_is_accepted(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = f"{time.monotonic_ns()}".ljust(255, "s")
    body = await ask_viewer(client, authorization=bearer(test_issuer.mint(sub=subject)))
    assert "errors" not in body, body
    assert len(await wallets_of_subject(services.db, subject)) == 1


# --- positive control -------------------------------------------------------------------


async def test_a_valid_token_from_the_test_issuer_gets_the_viewer(
    client, services: Services, test_issuer: TestIssuer
) -> None:
    subject = f"valid-subject-{time.monotonic_ns()}"
    token = test_issuer.mint(sub=subject, email="valid@example.com")
    body = await ask_viewer(client, authorization=bearer(token))
    assert "errors" not in body, body
    viewer = body["data"]["viewer"]
    assert viewer["email"] == "valid@example.com"
    [customer] = await customers_with_subject(services.db, subject)
    assert viewer["id"] == customer.id
    assert await tenant_slug(services.db, customer.tenant_id) == "test-utility"
    [wallet] = await wallets_of_subject(services.db, subject)
    assert viewer["wallet"]["address"] == wallet.address
