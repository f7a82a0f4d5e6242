"""What the relayer uses of the process's services. The composition root (``api.container``)
provides them; the relayer never imports it."""

from __future__ import annotations

from typing import Protocol

from chain.client import ChainClient
from core.db import Database
from core.settings import Settings
from relayer.pricing import PriceOracle
from wallet.kms import KeyRing


class RelayerServices(Protocol):
    settings: Settings
    db: Database
    chain: ChainClient
    keyring: KeyRing
    price_oracle: PriceOracle
    treasury_address: str
    forwarder_domain_separator: bytes
