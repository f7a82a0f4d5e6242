"""What ``serve`` starts in development only: a local chain with persisted state, the
development OpenID Provider, a local Stripe, and the demo data (customer, programs, stock)."""

from __future__ import annotations

import asyncio
import contextlib

from api.container import load_keyring
from chain.address_book import AddressBook, address_book_path
from chain.deploy import Deployer
from chain.profiles import deployer_key, profile_from_settings
from core.db import Database
from core.progress import Progress
from core.settings import Settings
from devsupport.anvil import LocalChain, rpc_answers
from devsupport.oidc_login import dev_subject
from devsupport.oidc_provider import DEFAULT_REDIRECT_URIS, DevOpenIDProvider
from identity.principal import Principal
from identity.service import DEV_TENANT_SLUG, provision, sync_tenants, trusted_issuers

DEMO_EMAIL = "alice@example.com"
DEMO_OVPP = 1_000 * 10**18
DEMO_STABLECOIN = 250 * 10**6
ALREADY_RUNNING = "already answers there: using it (not started, nor stopped, by serve)"


def start_local_chain(settings: Settings, progress: Progress, stack: contextlib.ExitStack) -> None:
    """A local anvil with its state in the data dir, unless a node already answers there."""
    if rpc_answers(settings.resolved_rpc_url):
        progress.detail(f"a node {ALREADY_RUNNING}")
        return
    chain = LocalChain(
        port=settings.anvil_port,
        state_file=settings.data_dir / "anvil-state.json",
        log_file=settings.data_dir / "anvil.log",
    )
    stack.callback(chain.stop)  # first: a stop request during start() must reach it
    chain.start()
    progress.detail(f"started anvil --hardfork shanghai, state in {chain.state_file}")


def start_development_services(
    settings: Settings, progress: Progress, stack: contextlib.ExitStack
) -> None:
    """The development OpenID Provider, the demo data and the local Stripe (each stopped by
    ``stack``), after the database and contracts are ready."""
    progress(f"sign-in: development OpenID Provider at {settings.dev_issuer}")
    if rpc_like_answers(settings.dev_issuer + "/.well-known/openid-configuration"):
        progress.detail(f"a provider {ALREADY_RUNNING}")
    else:
        provider = DevOpenIDProvider(
            port=settings.dev_oidc_port,
            keys_file=settings.data_dir / "dev-oidc-jwks.json",
            audience=settings.dev_audience,
            # the web app at /app signs in here, and the provider allows CORS on its
            # token endpoint only from the origins of these redirect URIs
            redirect_uris=(
                f"http://127.0.0.1:{settings.port}/app/callback",
                f"http://localhost:{settings.port}/app/callback",
                *DEFAULT_REDIRECT_URIS,
            ),
            log_file=settings.data_dir / "dev-oidc.log",
        )
        stack.callback(provider.stop)
        provider.start()
    progress(f"demo data: customer {DEMO_EMAIL}, device models, utility programs")
    address = asyncio.run(seed_demo_customer(settings, progress))
    progress.detail(f"wallet {address}")
    asyncio.run(seed_registry(settings, progress))
    start_local_stripe(settings, progress, stack)
    asyncio.run(seed_onramp_treasury(settings, progress))


async def seed_demo_customer(settings: Settings, progress: Progress) -> str:
    """The demo customer and wallet exist and hold OVPP and stablecoin (minted once)."""
    db = Database(settings.resolved_database_url)
    try:
        await sync_tenants(db, settings)
        tenant = next(t for t in await trusted_issuers(db) if t.tenant_slug == DEV_TENANT_SLUG)
        principal = Principal(
            tenant_id=tenant.tenant_id,
            tenant_slug=tenant.tenant_slug,
            issuer=tenant.issuer,
            subject=dev_subject(DEMO_EMAIL),
            email=DEMO_EMAIL,
            client_id=None,
            scopes=frozenset(),
        )
        account = await provision(db, principal=principal, keyring=load_keyring(settings))
    finally:
        await db.dispose()
    address = account.wallet.address
    profile = profile_from_settings(settings)
    book = AddressBook.load(address_book_path(settings, profile.chain_id))
    if book is None or not profile.is_local:
        return address
    deployer = Deployer(
        rpc_url=settings.resolved_rpc_url,
        private_key=deployer_key(settings, profile),
        progress=progress.detail,
    )
    for token, amount, label in (
        (book.ovpp_token, DEMO_OVPP, "OVPP"),
        (book.stablecoin, DEMO_STABLECOIN, "stablecoin"),
    ):
        if deployer.balance_of(token=token, owner=address) == 0:
            deployer.mint(token=token, to=address, amount=amount)
            progress.detail(f"minted demo {label} to {address}")
    return address


async def seed_registry(settings: Settings, progress: Progress) -> None:
    """Demo vendor models, the demo utility and its programs; the utility's wallet funded."""
    from api.container import Services
    from devsupport.demo import seed_registry_demo
    from programs.admin import tenant_by_slug, utility_wallet

    services = await Services.start(settings)
    try:
        await seed_registry_demo(services, progress=progress.detail)
        tenant = await tenant_by_slug(services, DEV_TENANT_SLUG)
        if tenant is None or services.chain.addresses is None:
            return
        wallet = await utility_wallet(services, tenant)
        deployer = Deployer(
            rpc_url=settings.resolved_rpc_url,
            private_key=deployer_key(settings, services.chain.profile),
            progress=progress.detail,
        )
        if (
            deployer.balance_of(token=services.chain.addresses.ovpp_token, owner=wallet.address)
            == 0
        ):
            deployer.mint(
                token=services.chain.addresses.ovpp_token, to=wallet.address, amount=DEMO_OVPP
            )
            progress.detail(f"minted sponsorship OVPP to the utility wallet {wallet.address}")
    finally:
        await services.close()


def start_local_stripe(settings: Settings, progress: Progress, stack: contextlib.ExitStack) -> None:
    """Development: the card onramp's Stripe is a local localstripe (started unless one answers
    at the API base), its webhook pointed at this server with the development secret."""
    from devsupport.local_stripe import LocalStripe, answers, configure_webhook

    api_base = settings.resolved_stripe_api_base
    secret = settings.resolved_stripe_webhook_secret
    if not api_base.startswith(("http://127.0.0.1", "http://localhost")) or secret is None:
        progress.detail(f"card payments: Stripe at {api_base}")
        return
    if answers(api_base):
        progress.detail(f"a localstripe {ALREADY_RUNNING}")
    else:
        local = LocalStripe(
            port=settings.localstripe_port,
            state_file=settings.data_dir / "localstripe.pickle",
            log_file=settings.data_dir / "localstripe.log",
        )
        stack.callback(local.stop)
        local.start()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    webhook = f"http://{host}:{settings.port}/webhooks/stripe"
    configure_webhook(api_base, url=webhook, secret=secret)
    progress.detail(f"card payments: localstripe at {api_base}, webhooks to {webhook}")


async def seed_onramp_treasury(settings: Settings, progress: Progress) -> None:
    """The onramp treasury wallet exists and, on the local chain, holds stock (minted once)."""
    from api.container import Services
    from chain.tokens import TokenKind, parse_units
    from onramp.treasury import treasury_account

    services = await Services.start(settings)
    try:
        account = await treasury_account(services)
        book = services.chain.addresses
        if book is None or not services.chain.profile.is_local:
            return
        deployer = Deployer(
            rpc_url=settings.resolved_rpc_url,
            private_key=deployer_key(settings, services.chain.profile),
            progress=progress.detail,
        )
        decimals = {token.kind: token.decimals for token in services.chain.tokens}
        stock = (
            (book.ovpp_token, settings.onramp_treasury_stock_ovpp, TokenKind.OVPP),
            (book.stablecoin, settings.onramp_treasury_stock_stablecoin, TokenKind.STABLECOIN),
        )
        for token, text, kind in stock:
            amount, label = parse_units(text, decimals[kind]), kind.value
            if amount and deployer.balance_of(token=token, owner=account.wallet.address) == 0:
                deployer.mint(token=token, to=account.wallet.address, amount=amount)
                progress.detail(f"minted onramp treasury {label} to {account.wallet.address}")
    finally:
        await services.close()


def rpc_like_answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
