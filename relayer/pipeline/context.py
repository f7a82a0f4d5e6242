"""What the stages use of the worker that runs them (``relayer.worker.RelayerWorker``)."""

from __future__ import annotations

from typing import Protocol

from chain.rpc import JsonRpc
from core.settings import Settings
from relayer.deps import RelayerServices


class PipelineWorker(Protocol):
    name: str
    services: RelayerServices
    settings: Settings
    rpc: JsonRpc
    chain_id: int
    forwarder: str
    is_postgres: bool
    # Keys that could not pay for gas, and keys the forwarder does not accept.
    low_balance_keys: set[str]
    unauthorized_keys: set[str]
    # Whether the forwarder answered the ``isRelayer`` probe (``reconcile``).
    forwarder_refuses_outsiders: bool
    # Wallets none of whose jobs is signed until ``resync_wallet`` has re-signed them.
    wallets_to_resync: set[str]

    async def read_gas_price(self) -> tuple[int, int]:
        """(max fee, tip) to sign at now; a network call, never under row locks."""
        ...
