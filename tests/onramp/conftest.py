"""The card onramp tests' session: the treasury's stock, the app served over real HTTP for
localstripe's webhooks, and an operator's environment for ``ovpp-wallet`` commands."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from api.container import Services
from chain.address_book import AddressBook
from chain.deploy import Deployer
from core.settings import Settings
from devsupport.anvil import LocalChain
from devsupport.local_stripe import LocalStripe, configure_webhook
from onramp.treasury import treasury_account
from tests.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET
from tests.support.onramp import OVPP, USDC, Live, serve_env
from tests.support.ports import free_port
from tests.support.stripe import StripeTestClient, WebhookTap


@pytest.fixture(scope="session")
async def treasury_stock(services: Services, deployer: Deployer, contracts: AddressBook) -> str:
    account = await treasury_account(services)
    deployer.mint(token=contracts.ovpp_token, to=account.wallet.address, amount=1_000_000 * OVPP)
    deployer.mint(token=contracts.stablecoin, to=account.wallet.address, amount=1_000_000 * USDC)
    return account.wallet.address


@pytest.fixture(scope="session")
async def live(app, localstripe: LocalStripe, treasury_stock: str) -> AsyncIterator[Live]:  # type: ignore[no-untyped-def]
    tap = WebhookTap(app)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(tap, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn exposes a flag, not an event)
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    configure_webhook(localstripe.url, url=f"{url}/webhooks/stripe", secret=STRIPE_WEBHOOK_SECRET)
    stripe = StripeTestClient(localstripe.url, STRIPE_API_KEY)
    yield Live(url=url, tap=tap, stripe=stripe)
    await stripe.close()
    server.should_exit = True
    await serving


@pytest.fixture
def cli_env(
    settings: Settings, kek: str, anvil: LocalChain, tmp_path: Path, trust_restored: None
) -> dict[str, str]:
    """The environment an operator's ``ovpp-wallet`` command (``ovpp_wallet``) runs in against this
    test session's chain, database and local Stripe."""
    return serve_env(settings, kek=kek, anvil=anvil, data_dir=tmp_path, port=free_port())
