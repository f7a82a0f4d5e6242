"""The development OpenID Provider issues RFC 9068 JWT access tokens through a real
authorization-code + PKCE flow, driven headlessly (devsupport.oidc_provider, devsupport.oidc_login).
"""

from __future__ import annotations

import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from devsupport.oidc_login import dev_subject, obtain_access_token
from devsupport.oidc_provider import DevOpenIDProvider

WALLET_AUDIENCE = "https://wallet.ovpp.local"
ALICE_EMAIL = "alice@example.com"


# ------------------------------------------------------------------------------ shared helpers


def _free_tcp_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the OS picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


async def _fetch_issuer_jwks(issuer: str) -> dict:
    """The issuer's public JWKS, located through OIDC discovery (as the API does)."""
    async with httpx.AsyncClient(timeout=5.0) as http_client:
        discovery_response = await http_client.get(f"{issuer}/.well-known/openid-configuration")
        discovery_response.raise_for_status()
        provider_metadata = discovery_response.json()
        assert provider_metadata["issuer"] == issuer
        jwks_response = await http_client.get(provider_metadata["jwks_uri"])
        jwks_response.raise_for_status()
        return jwks_response.json()


def _verify_access_token(access_token: str, *, jwks: dict, issuer: str, audience: str) -> jwt.Token:
    """Verify signature (RS256 only), typ, iss, aud and exp the way a resource server must."""
    decoded_token = jwt.decode(access_token, KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert decoded_token.header["typ"] == "at+jwt"
    assert decoded_token.header["alg"] == "RS256"
    assert decoded_token.header["kid"]
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        jti={"essential": True},
        client_id={"essential": True, "value": "ovpp-dev"},
    ).validate(decoded_token.claims)
    return decoded_token


@pytest.fixture(scope="module")
def dev_openid_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevOpenIDProvider]:
    provider_directory = tmp_path_factory.mktemp("dev-oidc")
    with DevOpenIDProvider(
        port=_free_tcp_port(),
        keys_file=provider_directory / "keys.json",
        log_file=provider_directory / "provider.log",
    ) as running_provider:
        yield running_provider


# ------------------------------------------------------------------------------------- tests


async def test_authorization_code_flow_issues_verifiable_jwt_access_token(
    dev_openid_provider: DevOpenIDProvider,
) -> None:
    access_token = await obtain_access_token(
        issuer=dev_openid_provider.issuer,
        email=ALICE_EMAIL,
        scope="openid email wallet:read wallet:sign",
    )

    jwks = await _fetch_issuer_jwks(dev_openid_provider.issuer)
    assert all("d" not in published_key for published_key in jwks["keys"])  # public keys only
    decoded_token = _verify_access_token(
        access_token,
        jwks=jwks,
        issuer=dev_openid_provider.issuer,
        audience=WALLET_AUDIENCE,
    )
    claims = decoded_token.claims
    assert claims["sub"] == dev_subject(ALICE_EMAIL)
    assert claims["sub"].startswith("dev-") and len(claims["sub"]) == len("dev-") + 24
    assert claims["email"] == ALICE_EMAIL
    granted_scopes = set(claims["scope"].split())
    assert {"wallet:read", "wallet:sign"} <= granted_scopes
    assert "utility:admin" not in granted_scopes  # only what was asked for
    assert claims["exp"] > time.time()


async def test_restart_with_same_keys_file_keeps_kid_and_old_tokens_verify(
    tmp_path: Path,
) -> None:
    keys_file_path = tmp_path / "keys.json"
    port = _free_tcp_port()

    with DevOpenIDProvider(port=port, keys_file=keys_file_path) as first_provider:
        access_token_before_restart = await obtain_access_token(
            issuer=first_provider.issuer, email=ALICE_EMAIL
        )
        kids_before_restart = {
            key["kid"] for key in (await _fetch_issuer_jwks(first_provider.issuer))["keys"]
        }
    assert stat.S_IMODE(keys_file_path.stat().st_mode) == 0o600

    with DevOpenIDProvider(port=port, keys_file=keys_file_path) as second_provider:
        jwks_after_restart = await _fetch_issuer_jwks(second_provider.issuer)

    assert {key["kid"] for key in jwks_after_restart["keys"]} == kids_before_restart
    decoded_token = _verify_access_token(
        access_token_before_restart,
        jwks=jwks_after_restart,
        issuer=second_provider.issuer,
        audience=WALLET_AUDIENCE,
    )
    assert decoded_token.header["kid"] in kids_before_restart


async def test_unknown_scope_is_not_granted(dev_openid_provider: DevOpenIDProvider) -> None:
    access_token = await obtain_access_token(
        issuer=dev_openid_provider.issuer,
        email="bob@example.com",
        scope="openid bogus:scope",
    )

    decoded_token = _verify_access_token(
        access_token,
        jwks=await _fetch_issuer_jwks(dev_openid_provider.issuer),
        issuer=dev_openid_provider.issuer,
        audience=WALLET_AUDIENCE,
    )
    assert "bogus:scope" not in decoded_token.claims.get("scope", "").split()
    assert decoded_token.claims["sub"] == dev_subject("bob@example.com")
