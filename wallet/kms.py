"""Key-encryption keys: the small interface a cloud KMS can implement.

A wallet's data key is wrapped by a key-encryption key (KEK). The backend keeps only the
wrapped data key; unwrapping needs the KEK, which lives in configuration here or in a KMS
(AWS KMS ``Encrypt``/``Decrypt`` with an encryption context, GCP KMS with additional
authenticated data, Vault transit). ``key_id`` is stored with each wallet so a rotation can
find what is still wrapped under an older key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import ConfigurationError

_NONCE_BYTES = 12


class KeyUnwrapError(Exception):
    """The wrapped key does not open under this KEK and associated data (wrong key or tampered)."""


class KeyEncryptionKey(Protocol):
    @property
    def key_id(self) -> str: ...

    def wrap(self, data_key: bytes, *, associated_data: bytes) -> bytes: ...

    def unwrap(self, wrapped_key: bytes, *, associated_data: bytes) -> bytes: ...


class LocalKeyEncryptionKey:
    """A 256-bit AES-GCM KEK held in process memory (from configuration)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("a key-encryption key must be exactly 32 bytes")
        self._aead = AESGCM(key)
        self._key_id = "local:" + hashlib.sha256(b"ovpp-kek-id\x00" + key).hexdigest()[:16]

    @classmethod
    def from_base64(cls, encoded: str) -> LocalKeyEncryptionKey:
        try:
            raw = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError) as error:
            raise ConfigurationError("a key-encryption key must be base64") from error
        return cls(raw)

    @staticmethod
    def generate_base64() -> str:
        return base64.b64encode(os.urandom(32)).decode()

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes, *, associated_data: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, associated_data)

    def unwrap(self, wrapped_key: bytes, *, associated_data: bytes) -> bytes:
        nonce, ciphertext = wrapped_key[:_NONCE_BYTES], wrapped_key[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated_data)
        except InvalidTag as error:
            raise KeyUnwrapError("data key does not unwrap under this KEK") from error


class KeyRing:
    """The current KEK (wraps new keys) and older ones still accepted for unwrapping."""

    def __init__(self, current: KeyEncryptionKey, previous: list[KeyEncryptionKey] | None = None):
        self.current = current
        self._by_id = {key.key_id: key for key in [*(previous or []), current]}

    def get(self, key_id: str) -> KeyEncryptionKey:
        try:
            return self._by_id[key_id]
        except KeyError:
            raise ConfigurationError(
                f"no key-encryption key with id {key_id!r} is configured "
                "(add it to OVPP_PREVIOUS_KEKS to unwrap keys still under it)"
            ) from None
