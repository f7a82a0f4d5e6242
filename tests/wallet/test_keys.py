"""Custodial keys: sealing, unlocking, tamper resistance and KEK rotation.

The unit tests need no database. The rotation test runs the real ``ovpp-wallet keys rewrap``
command against both databases and puts every wallet back under the session KEK afterwards,
so the tests after it keep unlocking with the shared ``services.keyring``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import traceback

import httpx
import pytest
from click.testing import CliRunner, Result
from cryptography.exceptions import InvalidTag
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlmodel import select

from api.container import Services
from cli.main import main as ovpp_wallet
from core.errors import ConfigurationError
from tests.support.issuer import TestIssuer
from tests.support.wallets import create_wallets
from wallet.keys import SealedKey, generate_sealed_key, rewrap, sealed_key_of, unlocked_account
from wallet.kms import KeyRing, KeyUnwrapError, LocalKeyEncryptionKey
from wallet.models import Wallet


def _new_kek() -> LocalKeyEncryptionKey:
    return LocalKeyEncryptionKey.from_base64(LocalKeyEncryptionKey.generate_base64())


def _private_key_of(sealed: SealedKey, *, keyring: KeyRing) -> bytes:
    with unlocked_account(sealed, keyring=keyring) as account:
        return bytes(account.key)


class _KekIgnoringAssociatedData:
    """A KEK that does not bind associated data, so a test can reach the inner layer with a
    data key that unwraps and see that the private-key ciphertext binds the address itself."""

    def __init__(self) -> None:
        self._inner = _new_kek()

    @property
    def key_id(self) -> str:
        return "test:ignores-associated-data"

    def wrap(self, data_key: bytes, *, associated_data: bytes) -> bytes:
        return self._inner.wrap(data_key, associated_data=b"")

    def unwrap(self, wrapped_key: bytes, *, associated_data: bytes) -> bytes:
        return self._inner.unwrap(wrapped_key, associated_data=b"")


class _ImpostorKek:
    """A different key answering to another KEK's id: a KMS alias pointed at the wrong key."""

    def __init__(self, *, claimed_key_id: str) -> None:
        self._inner = _new_kek()
        self._claimed_key_id = claimed_key_id

    @property
    def key_id(self) -> str:
        return self._claimed_key_id

    def wrap(self, data_key: bytes, *, associated_data: bytes) -> bytes:
        return self._inner.wrap(data_key, associated_data=associated_data)

    def unwrap(self, wrapped_key: bytes, *, associated_data: bytes) -> bytes:
        return self._inner.unwrap(wrapped_key, associated_data=associated_data)


def test_a_sealed_key_unlocks_to_a_signer_for_its_address() -> None:
    kek = _new_kek()
    sealed = generate_sealed_key(kek)
    assert sealed.kek_id == kek.key_id
    message = encode_defunct(text="OpenVPP: enroll in the summer demand-response program")

    with unlocked_account(sealed, keyring=KeyRing(kek)) as account:
        assert account.address == sealed.address
        signed = account.sign_message(message)

    assert Account.recover_message(message, signature=signed.signature) == sealed.address


def test_sealed_key_repr_shows_no_key_material() -> None:
    kek = _new_kek()
    sealed = generate_sealed_key(kek)
    private_key = _private_key_of(sealed, keyring=KeyRing(kek))

    for shown in (repr(sealed), str(sealed)):
        assert sealed.address in shown
        for secret in (sealed.encrypted_private_key, sealed.wrapped_data_key, private_key):
            assert repr(secret) not in shown
            assert secret.hex() not in shown.lower()
            assert base64.b64encode(secret).decode().rstrip("=") not in shown


def test_swapping_the_private_key_ciphertext_between_wallets_does_not_unlock() -> None:
    kek = _new_kek()
    first, second = generate_sealed_key(kek), generate_sealed_key(kek)
    swapped = dataclasses.replace(first, encrypted_private_key=second.encrypted_private_key)

    with pytest.raises(InvalidTag), unlocked_account(swapped, keyring=KeyRing(kek)):
        pytest.fail("a foreign private-key ciphertext unlocked")


def test_swapping_the_wrapped_data_key_between_wallets_does_not_unlock() -> None:
    # Same KEK for both: only the address bound as associated data tells the two apart.
    kek = _new_kek()
    first, second = generate_sealed_key(kek), generate_sealed_key(kek)
    swapped = dataclasses.replace(first, wrapped_data_key=second.wrapped_data_key)

    with pytest.raises(KeyUnwrapError), unlocked_account(swapped, keyring=KeyRing(kek)):
        pytest.fail("a foreign wrapped data key unlocked")


def test_both_ciphertexts_moved_to_another_address_do_not_unlock() -> None:
    kek = _new_kek()
    victim, target = generate_sealed_key(kek), generate_sealed_key(kek)
    moved = dataclasses.replace(target, address=victim.address)

    with pytest.raises(KeyUnwrapError), unlocked_account(moved, keyring=KeyRing(kek)):
        pytest.fail("a wallet's ciphertexts unlocked under another address")


def test_the_private_key_layer_binds_the_address_even_if_the_kek_does_not() -> None:
    kek = _KekIgnoringAssociatedData()
    victim, target = generate_sealed_key(kek), generate_sealed_key(kek)
    moved = dataclasses.replace(target, address=victim.address)

    with pytest.raises(InvalidTag), unlocked_account(moved, keyring=KeyRing(kek)):
        pytest.fail("the private-key ciphertext unlocked under another address")


def test_a_wrong_kek_under_the_right_id_fails_to_unwrap() -> None:
    sealed = generate_sealed_key(_new_kek())
    impostor = KeyRing(_ImpostorKek(claimed_key_id=sealed.kek_id))

    with pytest.raises(KeyUnwrapError), unlocked_account(sealed, keyring=impostor):
        pytest.fail("unlocked under the wrong KEK")
    with pytest.raises(KeyUnwrapError):
        rewrap(sealed, keyring=impostor, new_kek=_new_kek())


def test_a_keyring_without_the_wallets_kek_is_a_configuration_error() -> None:
    sealed = generate_sealed_key(_new_kek())
    keyring = KeyRing(_new_kek(), [_new_kek()])

    with pytest.raises(ConfigurationError) as raised:
        keyring.get(sealed.kek_id)
    assert raised.value.code == "CONFIGURATION"
    assert "OVPP_PREVIOUS_KEKS" in raised.value.message
    with pytest.raises(ConfigurationError), unlocked_account(sealed, keyring=keyring):
        pytest.fail("unlocked without its KEK")


def test_rewrap_moves_a_key_to_the_new_kek_without_touching_the_private_key() -> None:
    old_kek, new_kek = _new_kek(), _new_kek()
    sealed = generate_sealed_key(old_kek)
    private_key = _private_key_of(sealed, keyring=KeyRing(old_kek))

    resealed = rewrap(sealed, keyring=KeyRing(new_kek, [old_kek]), new_kek=new_kek)

    assert resealed.address == sealed.address
    assert resealed.kek_id == new_kek.key_id != old_kek.key_id
    assert resealed.encrypted_private_key == sealed.encrypted_private_key
    assert resealed.wrapped_data_key != sealed.wrapped_data_key
    assert _private_key_of(resealed, keyring=KeyRing(new_kek)) == private_key
    with pytest.raises(ConfigurationError), unlocked_account(resealed, keyring=KeyRing(old_kek)):
        pytest.fail("a re-wrapped key still needs only the old KEK")
    # Even claiming the old id, the new wrapping does not open under the old key.
    relabelled = dataclasses.replace(resealed, kek_id=old_kek.key_id)
    with pytest.raises(KeyUnwrapError), unlocked_account(relabelled, keyring=KeyRing(old_kek)):
        pytest.fail("the new wrapping opened under the old KEK")


def test_generated_keys_and_nonces_are_all_distinct() -> None:
    kek = _new_kek()
    keyring = KeyRing(kek)
    sealed_keys = [generate_sealed_key(kek) for _ in range(200)]

    def distinct(values: list[object]) -> int:
        return len(set(values))

    assert distinct([s.address for s in sealed_keys]) == 200
    assert distinct([_private_key_of(s, keyring=keyring) for s in sealed_keys]) == 200
    assert distinct([s.encrypted_private_key for s in sealed_keys]) == 200
    assert distinct([s.wrapped_data_key for s in sealed_keys]) == 200
    nonce_bytes = 12
    assert distinct([s.encrypted_private_key[:nonce_bytes] for s in sealed_keys]) == 200
    assert distinct([s.wrapped_data_key[:nonce_bytes] for s in sealed_keys]) == 200


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_a_local_kek_must_be_exactly_32_bytes(length: int) -> None:
    with pytest.raises(ConfigurationError):
        LocalKeyEncryptionKey(b"\x01" * length)
    with pytest.raises(ConfigurationError):
        LocalKeyEncryptionKey.from_base64(base64.b64encode(b"\x01" * length).decode())


@pytest.mark.parametrize(
    "encoded",
    ["not base64 at all!", "AAAA*AAA", "QUJD=REVG", "0x" + "ab" * 32, "ab" * 32 + "="],
    ids=["prose", "bad-character", "inner-padding", "0x-hex", "hex-with-padding"],
)
def test_a_local_kek_must_be_base64(encoded: str) -> None:
    with pytest.raises(ConfigurationError):
        LocalKeyEncryptionKey.from_base64(encoded)


def test_a_local_kek_id_is_stable_per_key_and_tolerates_a_trailing_newline() -> None:
    encoded = LocalKeyEncryptionKey.generate_base64()
    assert len(base64.b64decode(encoded)) == 32
    same = LocalKeyEncryptionKey.from_base64(encoded)
    from_key_file = LocalKeyEncryptionKey.from_base64(encoded + "\n")
    other = _new_kek()

    assert same.key_id == from_key_file.key_id
    assert same.key_id.startswith("local:")
    assert other.key_id != same.key_id
    assert base64.b64decode(encoded).hex()[:16] not in same.key_id


# --- rotation through the real command line, on both databases -----------------------------


async def _all_wallets(services: Services) -> list[Wallet]:
    async with services.db.session() as session:
        return list((await session.execute(select(Wallet).order_by(Wallet.address))).scalars())


async def _run_keys_rewrap(*, database_url: str, current_kek: str, previous_keks: str) -> Result:
    """``ovpp-wallet keys rewrap`` as an operator runs it. It calls ``asyncio.run`` itself, so
    it runs in a worker thread while this test's event loop waits."""
    env = {
        "OVPP_ENVIRONMENT": "production",
        "OVPP_DATABASE_URL": database_url,
        "OVPP_KEK": current_kek,
        "OVPP_PREVIOUS_KEKS": previous_keks,
    }
    return await asyncio.to_thread(CliRunner().invoke, ovpp_wallet, ["keys", "rewrap"], env=env)


def _explain(result: Result) -> str:
    if result.exc_info is None:
        return result.output
    return result.output + "".join(traceback.format_exception(*result.exc_info))


async def _all_relayer_keys(services: Services) -> list:
    from sqlmodel import select

    from relayer.models import RelayerKey

    async with services.db.session() as session:
        return list((await session.execute(select(RelayerKey).order_by(RelayerKey.slot))).scalars())


async def test_keys_rewrap_moves_every_wallet_to_the_new_kek(
    client: httpx.AsyncClient,
    services: Services,
    test_issuer: TestIssuer,
    database_url: str,
    kek: str,
    backend: str,
) -> None:
    created = await create_wallets(client, test_issuer, count=4, label=f"rewrap-{backend}")
    before = await _all_wallets(services)
    assert set(created) <= {wallet.address for wallet in before}
    session_kek_id = services.keyring.current.key_id
    assert {wallet.kek_id for wallet in before} == {session_kek_id}
    private_keys = {
        wallet.address: _private_key_of(sealed_key_of(wallet), keyring=services.keyring)
        for wallet in before
    }
    new_kek_encoded = LocalKeyEncryptionKey.generate_base64()
    new_kek = LocalKeyEncryptionKey.from_base64(new_kek_encoded)
    relayer_keys_before = await _all_relayer_keys(services)
    total = len(before) + len(relayer_keys_before)

    try:
        rotated = await _run_keys_rewrap(
            database_url=database_url, current_kek=new_kek_encoded, previous_keks=kek
        )
        assert rotated.exit_code == 0, _explain(rotated)
        lines = rotated.output.splitlines()
        assert lines[-2:] == [
            f"re-wrapped {total}/{total}",
            f"done: {total} key(s) now under {new_kek.key_id}",
        ]
        assert all(line.startswith("re-wrapped ") for line in lines[:-1])
        assert {key.kek_id for key in await _all_relayer_keys(services)} <= {new_kek.key_id}

        after = await _all_wallets(services)
        assert [wallet.address for wallet in after] == [wallet.address for wallet in before]
        only_new_kek = KeyRing(new_kek)
        for old_row, new_row in zip(before, after, strict=True):
            assert new_row.kek_id == new_kek.key_id
            assert new_row.encrypted_private_key == old_row.encrypted_private_key
            assert new_row.wrapped_data_key != old_row.wrapped_data_key
            sealed = sealed_key_of(new_row)
            assert _private_key_of(sealed, keyring=only_new_kek) == private_keys[new_row.address]
            with (
                pytest.raises(ConfigurationError),
                unlocked_account(sealed, keyring=services.keyring),
            ):
                pytest.fail("a rotated wallet still unlocks with only the old KEK")

        # Resumable: a second run finds nothing left under the old KEK.
        again = await _run_keys_rewrap(
            database_url=database_url, current_kek=new_kek_encoded, previous_keks=kek
        )
        assert again.exit_code == 0, _explain(again)
        assert again.output.splitlines() == [f"done: 0 key(s) now under {new_kek.key_id}"]
    finally:
        # Put every wallet back under the session KEK for the tests that follow.
        restored = await _run_keys_rewrap(
            database_url=database_url, current_kek=kek, previous_keks=new_kek_encoded
        )

    assert restored.exit_code == 0, _explain(restored)
    assert restored.output.splitlines()[-1] == f"done: {total} key(s) now under {session_kek_id}"
    assert {key.kek_id for key in await _all_relayer_keys(services)} <= {session_kek_id}
    for wallet in await _all_wallets(services):
        assert wallet.kek_id == session_kek_id
        sealed = sealed_key_of(wallet)
        assert _private_key_of(sealed, keyring=services.keyring) == private_keys[wallet.address]
