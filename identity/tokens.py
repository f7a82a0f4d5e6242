"""Validation of RFC 9068 JWT access tokens from the utilities' OpenID Providers.

The API is an OAuth 2.0 resource server. A token is accepted only when, in this order:
its algorithm is an asymmetric one we allow (never ``none``, never HMAC: an HS256 token
"signed" with an RSA public key is refused before any key is touched); its ``typ`` is
``at+jwt``; its ``iss`` is a configured utility; its ``kid`` is in that utility's JWKS
(found by OIDC discovery, cached, re-fetched once on an unknown ``kid``; while the provider
is down its last good set is served, see ``JwksCache``); the signature verifies; and
``aud``, ``exp``, ``nbf``, ``iat`` and ``sub`` hold.

A token that passed is remembered (``VerifiedTokens``) until it expires, for at most five
minutes, and only while its issuer's key set is the one that verified it: a mobile app sends
the same token with every request, and its signature need not be checked every time.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from cachetools import TLRUCache
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from core.errors import SignInUnavailable, Unauthenticated
from identity.principal import Principal

logger = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
ACCEPTED_TYPES = {"at+jwt", "application/at+jwt"}
MINIMUM_REFETCH_INTERVAL_SECONDS = 10.0
REFETCH_WAIT_SECONDS = 1.0  # the longest a verification waits for a refetch of known keys
MAXIMUM_STALE_SECONDS = 24 * 3600.0  # keys older than this are not served while a fetch fails
MAXIMUM_SUBJECT_LENGTH = 255  # OpenID Connect Core 1.0 §2; also the customers.subject column
MAXIMUM_EMAIL_LENGTH = 320  # the customers.email column


@dataclass(frozen=True)
class TrustedIssuer:
    tenant_id: str
    tenant_slug: str
    issuer: str
    audience: str
    admin_client_ids: frozenset[str] = frozenset()


@dataclass
class _CachedKeys:
    key_set: KeySet
    fetched_at: float


@dataclass(frozen=True)
class _Attempt:
    finished_at: float
    failed: bool


class IssuerDirectory:
    """Which issuers are trusted. Tenants are few; the directory is reloaded on a miss."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader  # async () -> list[TrustedIssuer]
        self._by_issuer: dict[str, TrustedIssuer] = {}
        self._loaded_at = 0.0

    def invalidate(self) -> None:
        """Reload on the next lookup (a utility was added or changed)."""
        self._loaded_at = 0.0

    async def find(self, issuer: str) -> TrustedIssuer | None:
        found = self._by_issuer.get(issuer)
        if found is None and time.monotonic() - self._loaded_at > 5.0:
            self._by_issuer = {entry.issuer: entry for entry in await self._loader()}
            self._loaded_at = time.monotonic()
            found = self._by_issuer.get(issuer)
        return found


# What a fetch may raise on a provider's answer: httpx.InvalidURL is no httpx.HTTPError, and a
# JSON document of the wrong shape (a list) raises AttributeError on ``.get``.
_FETCH_FAILURES = (
    httpx.HTTPError,
    httpx.InvalidURL,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    JoseError,
)


class JwksCache:
    """Each trusted issuer's key set, fetched by one attempt at a time per issuer.

    A verification never waits on a provider that is down while a key set is held: a set past
    its TTL (but younger than ``MAXIMUM_STALE_SECONDS``) is served at once and refreshed in the
    background; an unknown ``kid`` waits at most ``REFETCH_WAIT_SECONDS`` for a refetch. Every
    attempt, failed or not, holds off the next for ``MINIMUM_REFETCH_INTERVAL_SECONDS``, so a
    provider that is down is retried that often (while tokens arrive), not once per request.
    Only the first fetch of an issuer (no set to fall back on) is waited for whole."""

    def __init__(self, http: httpx.AsyncClient, *, ttl_seconds: float) -> None:
        self._http = http
        self._ttl = ttl_seconds
        self._keys: dict[str, _CachedKeys] = {}  # the last good set of each issuer
        self._attempts: dict[str, _Attempt] = {}  # the last finished fetch of each issuer
        self._fetching: dict[str, asyncio.Task[None]] = {}

    async def key_set(self, issuer: str, *, kid: str | None) -> KeySet:
        """The issuer's keys: stale ones while a refresh runs, a refetch when ``kid`` is not
        among them. ``SignInUnavailable`` when the keys that could hold ``kid`` are not known."""
        cached = self._usable(issuer)
        if cached is None:
            await asyncio.shield(self._fetch_once(issuer))  # nothing to serve meanwhile
            cached = self._usable(issuer)
            if cached is None:
                raise SignInUnavailable(
                    "the sign-in provider's keys could not be fetched; try again"
                )
            return cached.key_set
        if _has_kid(cached.key_set, kid):
            stale = time.monotonic() - cached.fetched_at >= self._ttl
            if stale and not self._held_off(issuer):
                self._fetch_once(issuer)  # in the background; the held set serves meanwhile
            return cached.key_set
        # An unknown kid: a key published since the last fetch, or a key the issuer never had.
        if not self._held_off(issuer):
            await asyncio.wait({self._fetch_once(issuer)}, timeout=REFETCH_WAIT_SECONDS)
        elif issuer in self._fetching:
            await asyncio.wait({self._fetching[issuer]}, timeout=REFETCH_WAIT_SECONDS)
        attempt = self._attempts.get(issuer)
        if issuer in self._fetching or attempt is None or attempt.failed:
            # Whether the issuer holds this kid could not be asked: an outage, not a bad token.
            raise SignInUnavailable("the sign-in provider's keys could not be fetched; try again")
        return self._keys[issuer].key_set

    def _usable(self, issuer: str) -> _CachedKeys | None:
        cached = self._keys.get(issuer)
        if cached is None or time.monotonic() - cached.fetched_at >= MAXIMUM_STALE_SECONDS:
            return None
        return cached

    def _held_off(self, issuer: str) -> bool:
        """A fetch runs, or the last one finished within the refetch interval."""
        attempt = self._attempts.get(issuer)
        recent = attempt is not None and (
            time.monotonic() - attempt.finished_at < MINIMUM_REFETCH_INTERVAL_SECONDS
        )
        return recent or issuer in self._fetching

    def _fetch_once(self, issuer: str) -> asyncio.Task[None]:
        """The issuer's fetch in flight, started if none is (concurrent callers share it)."""
        task = self._fetching.get(issuer)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._attempt(issuer))
            self._fetching[issuer] = task
        return task

    async def _attempt(self, issuer: str) -> None:
        """One fetch, its outcome recorded: whatever the provider answers (down, a ``jwks_uri``
        that is no URL, a document of the wrong shape) is a failed fetch, never raised."""
        try:
            key_set = await self._fetch(issuer)
        except _FETCH_FAILURES as error:
            logger.warning("JWKS fetch for %s failed: %s", issuer, error or type(error).__name__)
            self._attempts[issuer] = _Attempt(finished_at=time.monotonic(), failed=True)
        else:
            now = time.monotonic()
            self._keys[issuer] = _CachedKeys(key_set, now)
            self._attempts[issuer] = _Attempt(finished_at=now, failed=False)
        finally:
            self._fetching.pop(issuer, None)

    def current(self, issuer: str) -> KeySet | None:
        """The key set held for ``issuer`` now (no fetch)."""
        cached = self._keys.get(issuer)
        return cached.key_set if cached is not None else None

    async def _fetch(self, issuer: str) -> KeySet:
        discovery_url = issuer.rstrip("/") + "/.well-known/openid-configuration"
        discovery = (await self._http.get(discovery_url)).raise_for_status().json()
        if discovery.get("issuer") != issuer:
            raise ValueError(f"discovery document names issuer {discovery.get('issuer')!r}")
        jwks = (await self._http.get(discovery["jwks_uri"])).raise_for_status().json()
        public_keys = [key for key in jwks.get("keys", []) if key.get("kty") in {"RSA", "EC"}]
        return KeySet.import_key_set({"keys": public_keys})


@dataclass(frozen=True)
class _Verified:
    principal: Principal
    key_set: KeySet  # the issuer's key set that verified the signature
    valid_until: int | float  # exp + leeway, epoch seconds


class VerifiedTokens:
    """Tokens that passed validation, by their exact text, until ``exp`` (plus leeway) and for
    at most ``max_age_seconds``. An entry counts only while its issuer is still trusted and
    still holds the same key set: a rotated JWKS makes every token verify again."""

    def __init__(self, *, max_entries: int = 20_000, max_age_seconds: float = 300.0) -> None:
        self._max_age = max_age_seconds
        self._entries: TLRUCache[str, _Verified] = TLRUCache(
            maxsize=max_entries, ttu=self._expiry, timer=time.time
        )

    def _expiry(self, _token: str, entry: _Verified, now: float) -> float:
        return float(min(entry.valid_until, now + self._max_age))

    def get(self, token: str) -> _Verified | None:
        return self._entries.get(token)

    def put(self, token: str, entry: _Verified) -> None:
        self._entries[token] = entry


class AccessTokenValidator:
    def __init__(
        self, *, issuers: IssuerDirectory, jwks: JwksCache, leeway_seconds: int = 30
    ) -> None:
        self.issuers = issuers
        self._jwks = jwks
        self._leeway = leeway_seconds
        self.verified = VerifiedTokens()

    def usable_until(self, principal: Principal) -> int | float | None:
        """When ``principal``'s token stops being accepted (epoch seconds; ``exp`` + leeway)."""
        if principal.expires_at is None:
            return None
        return principal.expires_at + self._leeway

    async def validate(self, token: str) -> Principal:
        remembered = self.verified.get(token)
        if remembered is not None:
            principal = remembered.principal
            trusted = await self.issuers.find(principal.issuer)
            if (
                trusted is not None
                and trusted.tenant_id == principal.tenant_id
                and self._jwks.current(principal.issuer) is remembered.key_set
            ):
                return principal
        principal, key_set, expires_at = await self._verify(token)
        self.verified.put(
            token, _Verified(principal, key_set, valid_until=expires_at + self._leeway)
        )
        return principal

    async def _verify(self, token: str) -> tuple[Principal, KeySet, int | float]:
        header, unverified_claims = _peek(token)
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise Unauthenticated(f"access tokens signed with {algorithm!r} are not accepted")
        if str(header.get("typ", "")).lower() not in ACCEPTED_TYPES:
            raise Unauthenticated("not an access token (RFC 9068 requires typ at+jwt)")
        issuer_name = unverified_claims.get("iss")
        trusted = await self.issuers.find(issuer_name) if isinstance(issuer_name, str) else None
        if trusted is None:
            raise Unauthenticated("the token's issuer is not a trusted utility")
        kid = header.get("kid")
        key_set = await self._jwks.key_set(trusted.issuer, kid=kid)
        try:
            decoded = jwt.decode(token, key_set, algorithms=list(ALLOWED_ALGORITHMS))
        except InvalidKeyIdError as error:
            raise Unauthenticated("the token's signing key is unknown to its issuer") from error
        except BadSignatureError as error:
            raise Unauthenticated("the token's signature is invalid") from error
        except JoseError as error:
            raise Unauthenticated("the token could not be verified") from error
        claims = decoded.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=self._leeway,
            iss={"essential": True, "value": trusted.issuer},
            aud={"essential": True, "value": trusted.audience},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as error:
            raise Unauthenticated("the access token has expired; sign in again") from error
        except MissingClaimError as error:
            raise Unauthenticated(
                f"the token lacks a required claim: {error.description}"
            ) from error
        except InvalidClaimError as error:
            raise Unauthenticated(_claim_message(error.claim)) from error
        except JoseError as error:
            raise Unauthenticated("the token's claims are invalid") from error
        subject = str(claims["sub"])
        if len(subject) > MAXIMUM_SUBJECT_LENGTH or "\x00" in subject:
            raise Unauthenticated(_claim_message("sub"))
        principal = Principal(
            tenant_id=trusted.tenant_id,
            tenant_slug=trusted.tenant_slug,
            issuer=trusted.issuer,
            subject=subject,
            email=_storable_email(claims.get("email")),
            client_id=_client_of(claims),
            scopes=_scopes(claims),
            admin_client_ids=trusted.admin_client_ids,
            expires_at=claims["exp"],
        )
        # not float(): a JSON integer can be any size (10**400), and comparisons stay exact
        return principal, key_set, claims["exp"]


def _claim_message(claim: str) -> str:
    return {
        "nbf": "the access token is not valid yet",
        "iat": "the access token was issued in the future",
        "aud": "the access token is meant for another audience",
        "iss": "the token's issuer is not a trusted utility",
    }.get(claim, f"the token's {claim!r} claim is invalid")


def _storable_email(email: object) -> str | None:
    """The ``email`` claim, or None when a customer row could not hold it: the email is only
    informational, so an odd one must not lock its owner out (nor fail as an unexpected error)."""
    if not isinstance(email, str) or len(email) > MAXIMUM_EMAIL_LENGTH or "\x00" in email:
        return None
    return email


def _client_of(claims: dict[str, Any]) -> str | None:
    """The OAuth client the token was issued to: ``client_id`` (RFC 9068), else ``azp``; None
    when the two name different clients (which one holds the token cannot be told, so it is
    no administration client)."""
    named = [
        value
        for value in (claims.get("client_id"), claims.get("azp"))
        if isinstance(value, str) and value
    ]
    if len(set(named)) > 1:
        return None
    return named[0] if named else None


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    scope = claims.get("scope")
    if isinstance(scope, str):
        return frozenset(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, list):
        return frozenset(str(item) for item in scp)
    return frozenset()


def _has_kid(key_set: KeySet, kid: str | None) -> bool:
    if kid is None:
        return True
    try:
        key_set.get_by_kid(kid)
    except InvalidKeyIdError:
        return False
    return True


def _peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, unverified: only to choose the issuer and key. Nothing is trusted yet."""
    parts = token.split(".")
    if len(parts) != 3:
        raise Unauthenticated("the access token is not a JWT")
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
    except (ValueError, UnicodeDecodeError) as error:
        raise Unauthenticated("the access token is malformed") from error
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise Unauthenticated("the access token is malformed")
    return header, claims


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
