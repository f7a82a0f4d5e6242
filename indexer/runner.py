"""Starting and stopping the indexer, inside ``serve`` or as ``ovpp-wallet indexer``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from core.background import BackgroundLoop
from indexer.deps import IndexerServices
from indexer.follow import CommittedRange, Indexer


@dataclass
class RunningIndexer(BackgroundLoop):
    indexer: Indexer


async def start_indexer(
    services: IndexerServices,
    *,
    name: str = "indexer",
    on_commit: Callable[[CommittedRange], None] | None = None,
) -> RunningIndexer:
    """Run the indexer as a task of the current event loop. ``name`` must be unique among the
    indexers sharing the database: it holds the lease."""
    indexer = Indexer(services, name=name, on_commit=on_commit)
    stop = asyncio.Event()
    return RunningIndexer(indexer=indexer, stop=stop, task=asyncio.create_task(indexer.run(stop)))
