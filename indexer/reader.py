"""What the indexer reads from the node: the head and the cursor's block, a range's headers and
``Transfer`` logs in one JSON-RPC batch, and the times of the blocks its transfers are in.

Within a batch the headers are asked before the logs: logs read from a newer chain than the
headers show up as a log whose block hash differs (the read is discarded), and headers older
than the chain the cursor is then moved onto show up at the next round's cursor check (a
rollback). Either way nothing of a dropped block stays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chain.logs import TRANSFER_TOPIC, BlockHeader, TransferLog, parse_header, parse_transfer_log
from chain.rpc import JsonRpc, RpcError, RpcUnavailable
from indexer.errors import ChainMoved, RangeRefused


@dataclass(frozen=True)
class ChainTip:
    head: int
    cursor_hash: str | None
    """The node's hash of the cursor's block (``None`` when not asked, or the node lacks it)."""


@dataclass(frozen=True)
class RangeRead:
    first: int
    last: int
    headers: dict[int, BlockHeader]
    transfers: list[TransferLog]
    logs_read: int


def _block_call(number: int) -> tuple[str, list[Any]]:
    return ("eth_getBlockByNumber", [hex(number), False])


def _answer(result: Any, what: str) -> Any:
    if isinstance(result, RpcError):
        raise RpcUnavailable(f"{what}: {result.message}")
    return result


async def read_tip(rpc: JsonRpc, *, cursor_block: int | None) -> ChainTip:
    """The head's number and, if ``cursor_block`` is given, the node's hash of that block, in
    one round trip."""
    calls = [("eth_blockNumber", [])]
    if cursor_block is not None:
        calls.append(_block_call(cursor_block))
    head, *block = await rpc.batch(calls)
    head = int(_answer(head, "eth_blockNumber"), 16)
    cursor_hash = None
    if block:
        found = _answer(block[0], "eth_getBlockByNumber")
        cursor_hash = found["hash"] if isinstance(found, dict) else None
    return ChainTip(head=head, cursor_hash=cursor_hash)


async def read_range(
    rpc: JsonRpc,
    *,
    tokens: list[str],
    first: int,
    last: int,
    head: int,
    window: int,
    parent_hash: str | None,
) -> RangeRead:
    """Blocks ``first``..``last``: the headers of its ends and of every block within ``window``
    of ``head``, checked to form one chain on top of ``parent_hash`` (the cursor's), and the
    ``Transfer`` logs of ``tokens``. ``ChainMoved`` if the node's chain changed meanwhile;
    ``RangeRefused`` if the node will not answer ``eth_getLogs`` for this range."""
    numbers = sorted({first, last, *range(max(first, head - window + 1), last + 1)})
    log_filter = {
        "fromBlock": hex(first),
        "toBlock": hex(last),
        "address": tokens,
        "topics": [TRANSFER_TOPIC],
    }
    *blocks, logs = await rpc.batch(
        [*(_block_call(number) for number in numbers), ("eth_getLogs", [log_filter])]
    )
    if isinstance(logs, RpcError):
        raise RangeRefused(f"blocks {first}-{last}: {logs.message}")
    headers: dict[int, BlockHeader] = {}
    for number, block in zip(numbers, blocks, strict=True):
        block = _answer(block, "eth_getBlockByNumber")
        if not isinstance(block, dict):
            raise ChainMoved(f"block {number} is no longer on the node")
        headers[number] = parse_header(block)
    _check_links(headers, first=first, parent_hash=parent_hash)
    transfers = [parsed for log in logs if (parsed := parse_transfer_log(log)) is not None]
    for transfer in transfers:
        header = headers.get(transfer.block_number)
        if header is not None and header.hash != transfer.block_hash:
            raise ChainMoved(f"block {transfer.block_number} changed while it was read")
    return RangeRead(first, last, headers, transfers, logs_read=len(logs))


def _check_links(headers: dict[int, BlockHeader], *, first: int, parent_hash: str | None) -> None:
    if parent_hash is not None and headers[first].parent_hash != parent_hash:
        raise ChainMoved(f"block {first} no longer follows the indexed block {first - 1}")
    for number, header in headers.items():
        parent = headers.get(number - 1)
        if parent is not None and header.parent_hash != parent.hash:
            raise ChainMoved(f"block {number} no longer follows block {number - 1}")


async def block_times(
    rpc: JsonRpc, transfers: list[TransferLog], headers: dict[int, BlockHeader]
) -> dict[int, int]:
    """Block number → timestamp for the blocks of ``transfers``: from the logs (newer nodes put
    it there), the headers already read, or one batch of header reads checked against the logs'
    block hashes (``ChainMoved`` if one differs)."""
    times = {number: header.timestamp for number, header in headers.items()}
    missing: dict[int, str] = {}
    for transfer in transfers:
        if transfer.block_timestamp is not None:
            times[transfer.block_number] = transfer.block_timestamp
        elif transfer.block_number not in times:
            missing[transfer.block_number] = transfer.block_hash
    if missing:
        numbers = sorted(missing)
        for number, block in zip(
            numbers, await rpc.batch([_block_call(n) for n in numbers]), strict=True
        ):
            block = _answer(block, "eth_getBlockByNumber")
            if not isinstance(block, dict) or block["hash"] != missing[number]:
                raise ChainMoved(f"block {number} changed while it was read")
            times[number] = int(block["timestamp"], 16)
    return times
