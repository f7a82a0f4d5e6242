"""Starting and stopping the relayer worker, inside ``serve`` or as ``ovpp-wallet relayer``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from chain.profiles import deployer_key
from core.background import BackgroundLoop
from relayer.deps import RelayerServices
from relayer.keys import authorize_keys, ensure_relayer_keys, fund_local_keys
from relayer.worker import RelayerWorker

logger = logging.getLogger(__name__)


@dataclass
class RunningRelayer(BackgroundLoop):
    worker: RelayerWorker


async def prepare_relayer_keys(services: RelayerServices) -> None:
    keys = await ensure_relayer_keys(services, count=services.settings.relayer_keys)
    if services.chain.profile.is_local:
        owner_key = deployer_key(services.settings, services.chain.profile)
        await fund_local_keys(services, keys, deployer_key=owner_key)
        await authorize_keys(services, [key.address for key in keys], owner_key=owner_key)
    for key in keys:
        logger.info("relayer key %d: %s", key.slot, key.address)


async def start_relayer(services: RelayerServices, *, name: str = "relayer") -> RunningRelayer:
    await prepare_relayer_keys(services)
    worker = RelayerWorker(services, name=name)
    stop = asyncio.Event()
    return RunningRelayer(worker=worker, stop=stop, task=asyncio.create_task(worker.run(stop)))
