"""Addresses a client gives: the one way in for every recipient and fee recipient, so a typo
never becomes someone else's address.

An address is ``0x`` and 40 hex digits. Mixed case carries an EIP-55 checksum, which must
verify; all-lowercase or all-uppercase hex carries none (EIP-55 says so) and is accepted as is.
"""

from __future__ import annotations

import re
from functools import lru_cache

from eth_utils import to_checksum_address

from core.errors import InvalidInput

ZERO_ADDRESS = "0x" + "0" * 40

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


@lru_cache(maxsize=8192)
def checksummed(address: str) -> str:
    """EIP-55 form of a well-formed address, remembered: a keccak per call otherwise, and the
    transfer hot path checksums the same few addresses again and again."""
    return to_checksum_address(address)


def client_address(value: str, *, field: str) -> str:
    """``value`` in its checksummed form, or ``InvalidInput`` naming ``field``: not
    ``0x``+40 hex digits, a mixed-case address whose checksum does not verify, or the zero
    address (no one holds its key: whatever goes there is lost)."""
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise InvalidInput("not an address: give 0x followed by 40 hex digits", field=field)
    checksum = checksummed(value)
    digits = value[2:]
    if digits not in (digits.lower(), digits.upper()) and value != checksum:
        raise InvalidInput(
            "the address's checksum (its mix of upper and lower case) is wrong: it has a typo",
            field=field,
        )
    if checksum == ZERO_ADDRESS:
        raise InvalidInput("the zero address belongs to no one", field=field)
    return checksum
