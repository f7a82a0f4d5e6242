"""Endpoint secrets and Standard Webhooks signatures.

A secret is ``whsec_`` + base64 of 32 random bytes (what ``standardwebhooks.Webhook`` takes).
It is stored sealed by the key-encryption key, bound to its endpoint by associated data, and
unsealed only to sign. A signature is ``v1,`` + base64(HMAC-SHA256(key, f"{id}.{ts}.{body}")).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from wallet.kms import KeyRing

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
_SECRET_BYTES = 32


def _aad(endpoint_id: str) -> bytes:
    return b"ovpp-webhook-secret\x00" + endpoint_id.encode()


def new_secret() -> bytes:
    return os.urandom(_SECRET_BYTES)


def secret_text(key: bytes) -> str:
    """The secret as the utility's receiver configures it."""
    return SECRET_PREFIX + base64.b64encode(key).decode()


def seal(key: bytes, *, endpoint_id: str, keyring: KeyRing) -> tuple[bytes, str]:
    """(sealed secret, KEK id) for the endpoint's row."""
    kek = keyring.current
    return kek.wrap(key, associated_data=_aad(endpoint_id)), kek.key_id


def unseal(sealed: bytes, *, kek_id: str, endpoint_id: str, keyring: KeyRing) -> bytes:
    return keyring.get(kek_id).unwrap(sealed, associated_data=_aad(endpoint_id))


def signature(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value for this message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
