"""ERC-20 calldata: what a wallet signs to move or allow its tokens."""

from __future__ import annotations

from eth_hash.auto import keccak

from chain.abi_words import address_word, uint_word

TRANSFER_SELECTOR = keccak(b"transfer(address,uint256)")[:4]
APPROVE_SELECTOR = keccak(b"approve(address,uint256)")[:4]


def erc20_transfer_data(to: str, amount: int) -> bytes:
    return TRANSFER_SELECTOR + address_word(to) + uint_word(amount)


def erc20_approve_data(spender: str, amount: int) -> bytes:
    return APPROVE_SELECTOR + address_word(spender) + uint_word(amount)
