"""ABI words by hand, for the few encodings on the hot path (``eth_abi`` is ~10x slower)."""

from __future__ import annotations


def address_word(address: str) -> bytes:
    if len(address) != 42 or address[:2] not in ("0x", "0X"):
        raise ValueError(f"not an address: {address!r}")
    return b"\x00" * 12 + bytes.fromhex(address[2:])


def uint_word(value: int, *, bits: int = 256) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{value} does not fit in uint{bits}")
    return value.to_bytes(32, "big")
