"""Addresses from clients (``chain.addresses.client_address``): EIP-55 when mixed case, as is
when in one case, and never without ``0x``, padded, short or the zero address."""

from __future__ import annotations

import pytest

from chain.addresses import client_address
from core.errors import InvalidInput

# EIP-55's own examples
CHECKSUMMED = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@pytest.mark.parametrize(
    "given",
    [CHECKSUMMED, CHECKSUMMED.lower(), "0x" + CHECKSUMMED[2:].upper()],
    ids=["checksummed", "lowercase", "uppercase"],
)
def test_a_valid_checksum_or_no_checksum_gives_the_checksummed_address(given: str) -> None:
    assert client_address(given, field="to") == CHECKSUMMED


@pytest.mark.parametrize(
    "given",
    [
        "0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",  # one letter's case flipped: a typo
        CHECKSUMMED[2:],
        "0X" + CHECKSUMMED[2:],
        CHECKSUMMED + " ",
        CHECKSUMMED[:-1],
        CHECKSUMMED + "0",
        "0x" + "g" * 40,
        "0x" + "0" * 40,
        "",
    ],
)
def test_anything_else_is_invalid_input_on_the_field(given: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        client_address(given, field="feeRecipient")
    assert refused.value.field == "feeRecipient"
