"""ERC-20 ``Transfer`` logs and block headers as the node's JSON-RPC gives them, decoded by hand
(the indexer reads them by the hundred thousand: web3's formatters cost several times more)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_hash.auto import keccak
from eth_utils import to_checksum_address

TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


@dataclass(frozen=True)
class TransferLog:
    token_address: str  # checksummed, as every address here
    from_address: str
    to_address: str
    value: int
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    block_timestamp: int | None  # when the node includes it in the log (newer nodes do)


def parse_header(block: dict[str, Any]) -> BlockHeader:
    return BlockHeader(
        number=int(block["number"], 16),
        hash=block["hash"],
        parent_hash=block["parentHash"],
        timestamp=int(block["timestamp"], 16),
    )


@lru_cache(maxsize=100_000)
def checksummed(address: str) -> str:
    """EIP-55 form of a lowercase address (cached: the same wallets recur in log after log)."""
    return to_checksum_address(address)


def parse_transfer_log(log: dict[str, Any]) -> TransferLog | None:
    """The ERC-20 transfer a log records; ``None`` for any other log (an ERC-721 ``Transfer``
    has its token id as a fourth topic and no data) or one the node marks ``removed``."""
    topics = log.get("topics") or []
    if len(topics) != 3 or topics[0] != TRANSFER_TOPIC or log.get("removed"):
        return None
    data = log.get("data") or "0x"
    if len(data) != 66:
        return None
    timestamp = log.get("blockTimestamp")
    return TransferLog(
        token_address=checksummed(log["address"].lower()),
        from_address=checksummed("0x" + topics[1][-40:].lower()),
        to_address=checksummed("0x" + topics[2][-40:].lower()),
        value=int(data, 16),
        block_number=int(log["blockNumber"], 16),
        block_hash=log["blockHash"],
        tx_hash=log["transactionHash"],
        log_index=int(log["logIndex"], 16),
        block_timestamp=int(timestamp, 16) if timestamp else None,
    )
