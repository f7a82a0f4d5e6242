"""The relayer's raw transactions: EIP-1559 (type 2), RLP-encoded and signed directly.

``LocalAccount.sign_transaction`` spends ~1–3 ms per transaction on generic validation and
formatting, more than everything else the worker does per job; this encodes the one shape the
relayer sends (no access list) in ~0.1 ms. ``tests/chain/test_forwarder_encoding.py`` checks
it gives the same bytes and hash as ``eth_account``.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
from eth_hash.auto import keccak

EIP1559_TYPE = b"\x02"


@dataclass(frozen=True)
class SignedTransaction:
    raw_transaction: bytes
    hash: bytes


class TransactionSigner:
    """Signs with one private key, parsed once (the worker signs a batch per key)."""

    def __init__(self, private_key: bytes) -> None:
        self._key = coincurve.PrivateKey(private_key)

    def sign_eip1559(
        self,
        *,
        chain_id: int,
        nonce: int,
        max_priority_fee_per_gas: int,
        max_fee_per_gas: int,
        gas: int,
        to: str,
        value: int,
        data: bytes,
    ) -> SignedTransaction:
        if len(to) != 42 or to[:2] not in ("0x", "0X"):
            raise ValueError(f"not an address: {to!r}")
        fields = [
            _rlp_int(chain_id),
            _rlp_int(nonce),
            _rlp_int(max_priority_fee_per_gas),
            _rlp_int(max_fee_per_gas),
            _rlp_int(gas),
            _rlp_bytes(bytes.fromhex(to[2:])),
            _rlp_int(value),
            _rlp_bytes(data),
            _rlp_list([]),  # access list
        ]
        signature = self._key.sign_recoverable(
            keccak(EIP1559_TYPE + _rlp_list(fields)), hasher=None
        )  # r ‖ s ‖ y-parity; libsecp256k1 returns the low s
        r = int.from_bytes(signature[:32], "big")
        s = int.from_bytes(signature[32:64], "big")
        raw = EIP1559_TYPE + _rlp_list([*fields, _rlp_int(signature[64]), _rlp_int(r), _rlp_int(s)])
        return SignedTransaction(raw_transaction=raw, hash=keccak(raw))


def _rlp_int(value: int) -> bytes:
    if value < 0:
        raise ValueError("RLP integers are unsigned")
    return _rlp_bytes(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _rlp_bytes(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return _rlp_length(len(value), 0x80) + value


def _rlp_list(encoded_items: list[bytes]) -> bytes:
    payload = b"".join(encoded_items)
    return _rlp_length(len(payload), 0xC0) + payload


def _rlp_length(length: int, offset: int) -> bytes:
    if length < 56:
        return bytes([offset + length])
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([offset + 55 + len(length_bytes)]) + length_bytes
