"""The indexer's loop: follows the chain's blocks and stores every ``Transfer`` of the served
tokens that touches a custodial wallet (or the fee treasury).

A round takes (or renews) the chain's lease, checks that the cursor's block is still the
node's, reads the next range and writes its transfers, its recent block hashes and the cursor's
new place in one transaction, by a compare-and-set on the cursor. So a killed indexer leaves no
gap and no duplicate, and two indexers on one database never both write a range. When the
cursor's block is no longer the node's, it rolls back to the fork point and reads again
(docs/indexer.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from chain.logs import BlockHeader, TransferLog, checksummed
from chain.rpc import JsonRpc, RpcUnavailable
from core.db import utc_now
from indexer import repository
from indexer.balances import apply_transfers
from indexer.deps import IndexerServices
from indexer.errors import ChainMoved, LeaseLost, RangeRefused
from indexer.models import TransferStatus
from indexer.reader import RangeRead, block_times, read_range, read_tip
from indexer.received import emit_activity_received
from wallet.repository import wallet_addresses_among

logger = logging.getLogger(__name__)

GROW_RANGE_AFTER = 16
"""Ranges read since the node last refused one, before the range is doubled again (towards
``OVPP_INDEXER_BLOCK_RANGE``): a node's cap is usually steady, so probing it after every range
would have every other request refused."""


@dataclass(frozen=True)
class CommittedRange:
    """A range this indexer wrote: its blocks, the head then, and what it read and kept."""

    first: int
    last: int
    head: int
    logs_read: int
    transfers_stored: int


class Indexer:
    def __init__(
        self,
        services: IndexerServices,
        *,
        name: str = "indexer",
        on_commit: Callable[[CommittedRange], None] | None = None,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.name = name
        self.on_commit = on_commit
        self.chain_id = services.chain.profile.chain_id
        addresses = services.chain.addresses
        assert addresses is not None, "the chain client is connected first"
        self.tokens = [checksummed(a.lower()) for a in (addresses.ovpp_token, addresses.stablecoin)]
        self.treasury = checksummed(services.treasury_address.lower())
        self.rpc = JsonRpc(
            self.settings.resolved_rpc_url, timeout_seconds=self.settings.rpc_timeout_seconds
        )
        self.block_range = self.settings.indexer_block_range
        self.ranges_since_refusal = 0
        self.failures = 0
        self.head: int | None = None
        self.last_block: int | None = None
        self.rollbacks = 0

    @property
    def lag_blocks(self) -> int | None:
        """How far the index is behind the node's head, as last seen (``None``: not yet)."""
        if self.head is None or self.last_block is None:
            return None
        return max(0, self.head - self.last_block)

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("%s: started on chain %d", self.name, self.chain_id)
        while not stop.is_set():
            pause = await self._round()
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=pause)
        await self.close()
        logger.info("%s: stopped", self.name)

    async def close(self) -> None:
        """Hand the lease back (another indexer takes over at once) and close the RPC client."""
        with contextlib.suppress(Exception):  # a lease not released just expires
            async with self.services.db.session() as session:
                await repository.release_lease(session, chain_id=self.chain_id, owner=self.name)
        await self.rpc.close()

    async def _round(self) -> float:
        """One round; returns how long to wait before the next."""
        try:
            busy = await self.tick()
        except ChainMoved as error:
            logger.info("%s: the chain moved while reading (%s); reading again", self.name, error)
            return 0.0
        except LeaseLost as error:
            logger.info("%s: %s", self.name, error)
            return self.settings.indexer_poll_seconds
        except RangeRefused as error:
            self.ranges_since_refusal = 0
            if self.block_range > 1:
                self.block_range = max(1, self.block_range // 2)
                logger.info("%s: %s; ranges of %d now", self.name, error, self.block_range)
                return 0.0
            logger.warning("%s: %s", self.name, error)
            return self._backoff_seconds()
        except RpcUnavailable as error:
            logger.warning("%s: chain unreachable: %s", self.name, error)
            return self._backoff_seconds()
        except Exception:
            logger.exception("%s: round failed", self.name)
            return self._backoff_seconds()
        self.failures = 0
        return 0.0 if busy else self.settings.indexer_poll_seconds

    def _backoff_seconds(self) -> float:
        """Exponential from the poll interval up to the configured ceiling, with full jitter
        in its upper half: several indexers (or processes) do not retry in step."""
        self.failures += 1
        ceiling = min(
            self.settings.indexer_backoff_max_seconds,
            self.settings.indexer_poll_seconds * 2 ** min(self.failures, 20),
        )
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (timing jitter, not a secret)

    def _lease_until(self) -> datetime:
        return utc_now() + timedelta(seconds=self.settings.indexer_lease_seconds)

    async def tick(self) -> bool:
        """One round. Returns whether more blocks wait to be read at once."""
        async with self.services.db.session() as session:
            cursor = await repository.take_lease(
                session,
                chain_id=self.chain_id,
                owner=self.name,
                until=self._lease_until(),
                start_block=self.settings.indexer_start_block,
            )
        if cursor is None:
            return False  # another indexer holds the lease
        known_hash = cursor.last_block_hash if cursor.last_block >= 0 else None
        tip = await read_tip(
            self.rpc, cursor_block=cursor.last_block if known_hash is not None else None
        )
        self.head, self.last_block = tip.head, cursor.last_block
        if known_hash is not None and tip.cursor_hash != known_hash:
            await self.roll_back(cursor.last_block, head=tip.head)
            return True
        if cursor.last_block >= tip.head:
            return False
        read = await read_range(
            self.rpc,
            tokens=self.tokens,
            first=cursor.last_block + 1,
            last=min(cursor.last_block + self.block_range, tip.head),
            head=tip.head,
            window=self.settings.indexer_reorg_window,
            parent_hash=known_hash,
        )
        await self.commit_range(read, head=tip.head)
        self.ranges_since_refusal += 1
        if self.ranges_since_refusal % GROW_RANGE_AFTER == 0:
            self.block_range = min(self.settings.indexer_block_range, self.block_range * 2)
        return read.last < tip.head

    async def commit_range(self, read: RangeRead, *, head: int) -> None:
        """The range's transfers that touch a watched address, its recent block hashes, the
        confirmations the new head brings and the cursor's move, in one transaction."""
        async with self.services.db.session() as session:
            parties = {t.from_address for t in read.transfers} | {
                t.to_address for t in read.transfers
            }
            watched = await wallet_addresses_among(session, parties) | {self.treasury}
        kept = [t for t in read.transfers if t.from_address in watched or t.to_address in watched]
        times = await block_times(self.rpc, kept, read.headers)
        confirmations = self.settings.relayer_confirmations
        window = self.settings.indexer_reorg_window
        async with self.services.db.session() as session:
            moved = await repository.move_cursor(
                session,
                chain_id=self.chain_id,
                owner=self.name,
                expected_block=read.first - 1,
                block=read.last,
                block_hash=read.headers[read.last].hash,
                lease_until=self._lease_until(),
            )
            if not moved:
                raise LeaseLost(f"blocks {read.first}-{read.last} were left to another indexer")
            inserted = await repository.insert_transfers(
                session, [self._row(t, times, head=head) for t in kept]
            )
            await apply_transfers(
                session, chain_id=self.chain_id, moved=inserted, watched=watched, sign=1
            )
            received = [row for row in inserted if row.to_address in watched - {self.treasury}]
            await emit_activity_received(
                session,
                chain_id=self.chain_id,
                received=received,
                tokens=self.services.chain.tokens,
            )
            recent = [
                _block_row(self.chain_id, header)
                for number, header in read.headers.items()
                if number > head - window or number == read.last
            ]
            await repository.store_blocks(session, recent)
            await repository.forget_blocks_below(
                session, chain_id=self.chain_id, number=min(read.last, head - window + 1)
            )
            await repository.confirm_up_to(
                session, chain_id=self.chain_id, number=head - confirmations + 1
            )
        self.last_block = read.last
        if self.on_commit is not None:
            self.on_commit(CommittedRange(read.first, read.last, head, read.logs_read, len(kept)))

    def _row(self, transfer: TransferLog, times: dict[int, int], *, head: int) -> dict[str, Any]:
        depth = head - transfer.block_number + 1
        final = depth >= self.settings.relayer_confirmations
        return {
            "chain_id": self.chain_id,
            "token_address": transfer.token_address,
            "tx_hash": transfer.tx_hash,
            "log_index": transfer.log_index,
            "block_number": transfer.block_number,
            "block_hash": transfer.block_hash,
            "block_timestamp": datetime.fromtimestamp(times[transfer.block_number], UTC),
            "from_address": transfer.from_address,
            "to_address": transfer.to_address,
            "value": transfer.value,
            "status": TransferStatus.CONFIRMED if final else TransferStatus.PENDING,
            "indexed_at": utc_now(),
        }

    async def roll_back(self, cursor_block: int, *, head: int) -> None:
        """The cursor's block is no longer the node's: back to the highest remembered block
        that still is (the fork point), forgetting every transfer above it."""
        window = self.settings.indexer_reorg_window
        async with self.services.db.session() as session:
            remembered = await repository.recent_blocks(
                session, chain_id=self.chain_id, up_to=cursor_block, limit=window
            )
        fork = await self._fork_point(remembered)
        if fork is None:
            number = max(self.settings.indexer_start_block - 1, cursor_block - window)
            fork = (number, await self._hash_of(number))
            logger.error(
                "%s: reorganisation deeper than the %d blocks remembered: rolled back to block "
                "%d (what was indexed above it is read again)",
                self.name,
                window,
                number,
            )
        async with self.services.db.session() as session:
            moved = await repository.move_cursor(
                session,
                chain_id=self.chain_id,
                owner=self.name,
                expected_block=cursor_block,
                block=fork[0],
                block_hash=fork[1],
                lease_until=self._lease_until(),
            )
            if not moved:
                raise LeaseLost("the cursor moved before the rollback")
            removed = await repository.forget_above(session, chain_id=self.chain_id, number=fork[0])
            await self._take_off_balances(session, removed, fork=fork[0])
        self.rollbacks += 1
        self.last_block = fork[0]
        logger.warning(
            "%s: reorganisation below head %d: blocks %d-%d replaced, rolled back to block %d "
            "(%d transfers removed, to be read again)",
            self.name,
            head,
            fork[0] + 1,
            cursor_block,
            fork[0],
            len(removed),
        )

    async def _take_off_balances(
        self, session: AsyncSession, removed: list[Row[Any]], *, fork: int
    ) -> None:
        parties = {row.from_address for row in removed} | {row.to_address for row in removed}
        watched = await wallet_addresses_among(session, parties) | {self.treasury}
        await apply_transfers(
            session,
            chain_id=self.chain_id,
            moved=removed,
            watched=watched,
            sign=-1,
            rolled_back_to=fork,
        )

    async def _fork_point(self, remembered: list[tuple[int, str]]) -> tuple[int, str] | None:
        """The highest remembered (number, hash) the node still has, or ``None``."""
        if not remembered:
            return None
        answers = await self.rpc.batch(
            [("eth_getBlockByNumber", [hex(number), False]) for number, _ in remembered]
        )
        for (number, block_hash), block in zip(remembered, answers, strict=True):
            if isinstance(block, dict) and block.get("hash") == block_hash:
                return number, block_hash
        return None

    async def _hash_of(self, number: int) -> str | None:
        if number < 0:
            return None
        block = await self.rpc.call("eth_getBlockByNumber", hex(number), False)
        return block["hash"] if isinstance(block, dict) else None


def _block_row(chain_id: int, header: BlockHeader) -> dict[str, Any]:
    return {
        "chain_id": chain_id,
        "number": header.number,
        "hash": header.hash,
        "parent_hash": header.parent_hash,
    }
