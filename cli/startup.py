"""What ``serve`` does before it answers requests: the chain, migrations, the contracts'
address book, and in development the local stack (``devsupport``). Each step says what it is
doing; the slow first start shows progress."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

from chain.address_book import AddressBook, address_book_path
from chain.deploy import Deployer
from chain.profiles import deployer_key, profile_from_settings
from core.migrate import upgrade_to_head
from core.progress import Progress
from core.settings import Settings
from core.urls import rpc_url_shown, without_credentials


def startup_steps(settings: Settings) -> int:
    return 5 if settings.is_development else 3


@contextmanager
def started(settings: Settings, progress: Progress) -> Iterator[None]:
    """Makes ready what the API needs, and stops what it started again on exit."""
    with contextlib.ExitStack() as stack:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        profile = profile_from_settings(settings)
        progress(
            f"chain: {profile.name} (chain id {profile.chain_id}) at "
            f"{rpc_url_shown(settings.resolved_rpc_url)}"
        )
        if profile.is_local and settings.start_local_chain:
            from devsupport.bootstrap import start_local_chain

            start_local_chain(settings, progress, stack)

        progress(f"database: migrating {without_credentials(settings.resolved_database_url)}")
        asyncio.run(upgrade_to_head(settings.resolved_database_url))

        progress("contracts: checking the address book")
        ensure_contracts(settings, progress)

        if settings.is_development:
            from devsupport.bootstrap import start_development_services

            start_development_services(settings, progress, stack)
        yield


def ensure_contracts(settings: Settings, progress: Progress) -> AddressBook:
    profile = profile_from_settings(settings)
    path = address_book_path(settings, profile.chain_id)
    book = AddressBook.load(path)
    if settings.ovpp_token_address and settings.stablecoin_address:
        progress.detail("token addresses come from configuration")
        return book  # type: ignore[return-value]
    deployer = Deployer(
        rpc_url=settings.resolved_rpc_url,
        private_key=deployer_key(settings, profile),
        progress=progress.detail,
    )
    if (
        book is not None
        and book.registry is None
        and deployer.book_is_live(book.model_copy(update={"registry": book.forwarder}))
    ):
        registry = deployer.deploy(
            "OVPPRegistry", book.forwarder, book.ovpp_token, deployer.account.address
        )
        book = book.model_copy(update={"registry": registry})
        book.save(path)
        progress.detail(f"added the OpenVPP registry at {registry}")
        return book
    if book is not None and book.rewards_distributor is None and deployer.book_is_live(book):
        distributor = deployer.deploy("RewardsDistributor", book.forwarder, book.ovpp_token)
        book = book.model_copy(update={"rewards_distributor": distributor})
        book.save(path)
        progress.detail(f"added the rewards distributor at {distributor}")
        return book
    if book is not None and deployer.book_is_live(book):
        progress.detail(f"deployed already: OVPP {book.ovpp_token}, stablecoin {book.stablecoin}")
        return book
    if book is not None:
        progress.detail("the chain no longer holds the contracts of the address book: redeploying")
    book = deployer.deploy_all()
    book.save(path)
    progress.detail(f"address book written to {path}")
    return book
