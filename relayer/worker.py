"""The relayer worker: moves transactions through QUEUED → SIGNED → SUBMITTED → MINED →
CONFIRMED | FAILED, one relayer key at a time, by the stages of ``relayer.pipeline``.

A crash at any point loses nothing and sends nothing twice; the invariants that make it so,
and why keys run concurrently on PostgreSQL only, are in docs/relayer.md ("Pipeline internals").
"""

from __future__ import annotations

import asyncio
import logging
import time

from chain.rpc import JsonRpc, RpcUnavailable
from relayer import repository
from relayer.deps import RelayerServices
from relayer.keys import enabled_keys
from relayer.models import RelayerKey, RelayStatus
from relayer.pipeline import broadcast, sign, track
from relayer.pipeline import reconcile as reconciliation

logger = logging.getLogger(__name__)

RECONCILE_EVERY_SECONDS = 10.0


class RelayerWorker:
    """One worker's loop and its in-memory state (``relayer.pipeline.context.PipelineWorker``)."""

    def __init__(self, services: RelayerServices, *, name: str = "relayer") -> None:
        self.services = services
        self.settings = services.settings
        self.name = name
        self.rpc = JsonRpc(
            self.settings.resolved_rpc_url, timeout_seconds=self.settings.rpc_timeout_seconds
        )
        self.chain_id = services.chain.profile.chain_id
        self.forwarder = services.chain.addresses.forwarder if services.chain.addresses else ""
        self._last_reconcile: float | None = None  # the first round reconciles
        self.is_postgres = not services.db.is_sqlite
        self.low_balance_keys: set[str] = set()
        # Keys the forwarder does not accept (`ovpp-wallet relayer-authorize`): nothing is
        # signed with them, since every transaction they sent would revert and cost gas.
        self.unauthorized_keys: set[str] = set()
        # Whether the forwarder answered the ``isRelayer`` probe: only then may a reverted job
        # be signed again (docs/relayer.md, "Reverted jobs"). False until the first reconcile.
        self.forwarder_refuses_outsiders = False
        # Wallets one of whose jobs failed without executing: none of their jobs is signed
        # until ``resync_wallet`` re-signed them. In memory only: it saves gas, and
        # correctness never depends on it (docs/relayer.md, "Reverted jobs").
        self.wallets_to_resync: set[str] = set()

    async def run(self, stop: asyncio.Event) -> None:
        logger.info("%s: started", self.name)
        while not stop.is_set():
            try:
                busy = await self.tick()
            except RpcUnavailable as error:
                logger.warning("%s: chain unreachable: %s", self.name, error)
                busy = False
            except Exception:
                logger.exception("%s: tick failed", self.name)
                busy = False
            # A busy worker pauses too: a round's cost is mostly per round, not per job, and
            # rounds back to back under a trickle of jobs multiply the CPU per transaction.
            pause = (
                self.settings.relayer_round_pause_seconds
                if busy
                else self.settings.relayer_poll_seconds
            )
            if pause > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=pause)
                except TimeoutError:
                    pass
        await self.rpc.close()
        logger.info("%s: stopped", self.name)

    async def tick(self) -> bool:
        """One round over every key with work. Returns whether there was anything to do.

        An idle round is a single grouped count. Keys are chosen by their jobs, not by
        ``enabled``: a disabled key still finishes its transactions."""
        if (
            self._last_reconcile is None
            or time.monotonic() - self._last_reconcile > RECONCILE_EVERY_SECONDS
        ):
            async with self.services.db.session() as session:
                keys = await enabled_keys(session)
            await self.reconcile(keys)
            self._last_reconcile = time.monotonic()
        for wallet_id in sorted(self.wallets_to_resync):
            try:
                await self.resync_wallet(wallet_id)  # returns early while one is in flight
            except RpcUnavailable:
                raise
            except Exception:  # one wallet's trouble must not stop every key's work
                logger.exception("%s: resync of wallet %s failed; retried", self.name, wallet_id)
        work = await self._work_by_key()
        if not work:
            return False
        gas_price = (
            await self.read_gas_price()
            if any(RelayStatus.QUEUED in stages for stages in work.values())
            else None
        )
        if self.is_postgres:
            results = await asyncio.gather(
                *(self._advance(key_id, stages, gas_price) for key_id, stages in work.items())
            )
            return any(results)
        busy = False
        for key_id, stages in work.items():
            busy |= await self._advance(key_id, stages, gas_price)
        return busy

    async def _work_by_key(self) -> dict[str, set[str]]:
        """Relayer key id → the open stages it has jobs in."""
        async with self.services.db.session() as session:
            rows = await repository.stages_by_key(session)
        work: dict[str, set[str]] = {}
        for key_id, status in rows:
            work.setdefault(key_id, set()).add(status)
        return work

    async def _advance(
        self, key_id: str, stages: set[str], gas_price: tuple[int, int] | None
    ) -> bool:
        """One key's stages in order: its nonces are only ever assigned and sent in order.
        A stage runs when it had jobs at the start of the round or the one before it just
        made some."""
        signed = (
            gas_price is not None
            and RelayStatus.QUEUED in stages
            and key_id not in self.unauthorized_keys
        )
        if signed:
            assert gas_price is not None
            signed = await self.sign_queued(key_id, gas_price)
        sent = False
        if signed or RelayStatus.SIGNED in stages:
            sent = await self.broadcast_signed(key_id)
        tracked = False
        if sent or stages & {RelayStatus.SUBMITTED, RelayStatus.MINED}:
            tracked = await self.track_submitted(key_id)
        return signed or sent or tracked

    async def sign_queued(self, key_id: str, gas_price: tuple[int, int]) -> bool:
        return await sign.sign_queued(self, key_id, gas_price)

    async def broadcast_signed(self, key_id: str) -> bool:
        return await broadcast.broadcast_signed(self, key_id)

    async def track_submitted(self, key_id: str) -> bool:
        return await track.track_submitted(self, key_id)

    async def reconcile(self, keys: list[RelayerKey]) -> None:
        await reconciliation.reconcile(self, keys)

    async def resync_wallet(self, wallet_id: str) -> None:
        await reconciliation.resync_wallet(self, wallet_id)

    async def read_gas_price(self) -> tuple[int, int]:
        """(max fee, tip) to sign at: the pending block's base fee is the one the next
        transaction must meet."""
        block = await self.rpc.call("eth_getBlockByNumber", "pending", False)
        base_fee = int(block["baseFeePerGas"], 16)
        tip = 10**9
        return min(base_fee * 2 + tip, self.settings.relayer_max_fee_per_gas_wei), tip
