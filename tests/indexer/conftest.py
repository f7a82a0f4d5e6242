"""``indexer_stack``: a chain of the test's own (it may reorganise it), with the contracts
deployed, and a database of its own on each backend, with the services the indexer takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from eth_account import Account

from api.container import Services
from chain.deploy import Deployer
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from core.settings import load_settings
from devsupport.anvil import LocalChain
from devsupport.databases import fresh_database
from tests.support.databases import DATABASE_PREFIX, POSTGRES_ADMIN_URL
from tests.support.indexer import IndexerStack
from tests.support.ports import free_port
from wallet.kms import LocalKeyEncryptionKey


@pytest.fixture(params=["sqlite", "postgresql"])
async def indexer_stack(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IndexerStack]:
    chain = LocalChain(port=free_port(), log_file=tmp_path / "anvil.log")
    chain.start()
    try:
        deployer = Deployer(
            rpc_url=chain.rpc_url, private_key=ANVIL_DEV_PRIVATE_KEY, progress=lambda _m: None
        )
        book_path = tmp_path / "addresses.json"
        deployer.deploy_all().save(book_path)
        async with fresh_database(
            request.param, directory=tmp_path, admin_url=POSTGRES_ADMIN_URL, prefix=DATABASE_PREFIX
        ) as database_url:
            settings = load_settings(
                environment="development",
                data_dir=tmp_path / "data",
                database_url=database_url,
                rpc_url=chain.rpc_url,
                address_book=book_path,
                kek=LocalKeyEncryptionKey.generate_base64(),
                treasury_address=Account.create().address,
                indexer_poll_seconds=0.05,
                indexer_backoff_max_seconds=0.5,
            )
            services = await Services.start(settings)
            try:
                yield IndexerStack(
                    chain=chain,
                    deployer=deployer,
                    settings=settings,
                    services=services,
                    tmp_path=tmp_path,
                )
            finally:
                await services.close()
    finally:
        chain.stop()
