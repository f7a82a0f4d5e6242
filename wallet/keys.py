"""Custodial keys: generation and envelope encryption.

Invariants:
- a private key comes from the OS CSPRNG and is written only encrypted (AES-256-GCM under a
  fresh per-wallet data key; the data key only wrapped by the KEK);
- both layers bind the wallet address as associated data, so a ciphertext moved to another
  wallet row does not decrypt;
- the plaintext key exists only inside ``unlocked_key`` (or ``unlocked_account``) while
  signing, and is never logged or returned (``SealedKey.__repr__`` shows nothing secret).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account
from eth_account.signers.local import LocalAccount

from wallet.kms import KeyEncryptionKey, KeyRing

_NONCE_BYTES = 12


def _key_aad(address: str) -> bytes:
    return b"ovpp-wallet-key\x00" + address.lower().encode()


def _data_key_aad(address: str) -> bytes:
    return b"ovpp-wallet-dek\x00" + address.lower().encode()


@dataclass(frozen=True)
class SealedKey:
    address: str
    encrypted_private_key: bytes = field(repr=False)
    wrapped_data_key: bytes = field(repr=False)
    kek_id: str


def generate_sealed_key(kek: KeyEncryptionKey) -> SealedKey:
    """A new secp256k1 key, sealed. The plaintext never leaves this function."""
    private_key = bytearray(_random_secp256k1_scalar())
    try:
        address = Account.from_key(bytes(private_key)).address
        data_key = bytearray(AESGCM.generate_key(bit_length=256))
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = nonce + AESGCM(bytes(data_key)).encrypt(
            nonce, bytes(private_key), _key_aad(address)
        )
        wrapped = kek.wrap(bytes(data_key), associated_data=_data_key_aad(address))
        return SealedKey(
            address=address,
            encrypted_private_key=ciphertext,
            wrapped_data_key=wrapped,
            kek_id=kek.key_id,
        )
    finally:
        _wipe(private_key)
        if "data_key" in locals():
            _wipe(data_key)


def rewrap(sealed: SealedKey, *, keyring: KeyRing, new_kek: KeyEncryptionKey) -> SealedKey:
    """The same sealed key with its data key wrapped under ``new_kek`` instead."""
    data_key = keyring.get(sealed.kek_id).unwrap(
        sealed.wrapped_data_key, associated_data=_data_key_aad(sealed.address)
    )
    return SealedKey(
        address=sealed.address,
        encrypted_private_key=sealed.encrypted_private_key,
        wrapped_data_key=new_kek.wrap(data_key, associated_data=_data_key_aad(sealed.address)),
        kek_id=new_kek.key_id,
    )


@contextmanager
def unlocked_key(sealed: SealedKey, *, keyring: KeyRing) -> Iterator[bytes]:
    """The wallet's raw private key, alive only inside the ``with`` block. The AES-GCM tag,
    computed over the wallet's address as associated data, proves it is the key sealed for
    that address (no public key is derived: the hot path only signs)."""
    data_key = keyring.get(sealed.kek_id).unwrap(
        sealed.wrapped_data_key, associated_data=_data_key_aad(sealed.address)
    )
    blob = sealed.encrypted_private_key
    private_key = bytearray(
        AESGCM(data_key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], _key_aad(sealed.address))
    )
    try:
        yield bytes(private_key)
    finally:
        _wipe(private_key)


@contextmanager
def unlocked_account(sealed: SealedKey, *, keyring: KeyRing) -> Iterator[LocalAccount]:
    """A signer for the wallet, alive only inside the ``with`` block."""
    with unlocked_key(sealed, keyring=keyring) as private_key:
        account = Account.from_key(private_key)
        if account.address != sealed.address:
            raise ValueError("sealed key does not match its wallet address")
        yield account


_SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _random_secp256k1_scalar() -> bytes:
    while True:
        candidate = os.urandom(32)
        if 0 < int.from_bytes(candidate, "big") < _SECP256K1_ORDER:
            return candidate


def _wipe(buffer: bytearray) -> None:
    """Best effort: Python may hold other copies, but ours do not outlive their use."""
    for index in range(len(buffer)):
        buffer[index] = 0


class SealedRow(Protocol):
    """A table row that keeps a sealed key: a customer's wallet or a relayer key."""

    address: str
    encrypted_private_key: bytes
    wrapped_data_key: bytes
    kek_id: str


def sealed_key_of(row: SealedRow) -> SealedKey:
    return SealedKey(
        address=row.address,
        encrypted_private_key=row.encrypted_private_key,
        wrapped_data_key=row.wrapped_data_key,
        kek_id=row.kek_id,
    )
