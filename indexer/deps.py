"""What the indexer uses of the process's services. The composition root (``api.container``)
provides them; the indexer never imports it."""

from __future__ import annotations

from typing import Protocol

from chain.client import ChainClient
from core.db import Database
from core.settings import Settings


class IndexerServices(Protocol):
    settings: Settings
    db: Database
    chain: ChainClient
    treasury_address: str
