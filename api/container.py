"""The process-wide services, built once from the settings and shared by every request."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import httpx

from chain.address_book import address_book_path, resolve_addresses
from chain.client import ChainClient
from chain.profiles import profile_from_settings
from chain.tokens import TokenKind
from core.db import Database
from core.errors import ConfigurationError
from core.settings import Settings
from identity.service import AccountCache, sync_tenants, trusted_issuers
from identity.tokens import AccessTokenValidator, IssuerDirectory, JwksCache
from onramp.hold import card_hold
from onramp.processor import PaymentFollower
from onramp.stripe_gateway import StripeGateway
from programs.card import advance_card_enrollments
from programs.registry_changes import advance_registry_changes
from programs.rewards.settlement import advance_reward_settlements
from relayer.deps import HeldFunds
from relayer.forwarder import domain_separator
from relayer.hold import following_tokens
from relayer.pricing import FixedPriceOracle, PriceOracle
from wallet.kms import KeyRing, LocalKeyEncryptionKey

# Anvil's second well-known development account: the default fee treasury on the local chain.
LOCAL_TREASURY_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

logger = logging.getLogger(__name__)

# What the onramp processor follows besides payments: card-paid enrollments to their connection,
# administrators' registry changes to the catalog, ended events to their settled rewards.
ONRAMP_FOLLOWERS: tuple[PaymentFollower, ...] = (
    advance_card_enrollments,
    advance_registry_changes,
    advance_reward_settlements,
)
"""What the onramp processor runs after each round: card-paid enrollments wait on payments."""


def load_keyring(settings: Settings) -> KeyRing:
    """The configured KEKs. In development a KEK is generated once into the data dir."""
    if settings.kek is not None:
        current = LocalKeyEncryptionKey.from_base64(settings.kek.get_secret_value())
    elif settings.is_development:
        key_file = settings.data_dir / "kek.b64"
        if not key_file.exists():
            key_file.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(LocalKeyEncryptionKey.generate_base64() + "\n")
            logger.info("generated a development key-encryption key in %s", key_file)
        current = LocalKeyEncryptionKey.from_base64(key_file.read_text())
    else:
        raise ConfigurationError("OVPP_KEK is required in production")
    previous = [
        LocalKeyEncryptionKey.from_base64(key.get_secret_value()) for key in settings.previous_keks
    ]
    return KeyRing(current, previous)


@dataclass
class Services:
    settings: Settings
    db: Database
    chain: ChainClient
    keyring: KeyRing
    token_validator: AccessTokenValidator
    http: httpx.AsyncClient
    price_oracle: PriceOracle
    treasury_address: str
    forwarder_domain_separator: bytes
    held_funds: HeldFunds  # the onramp's card holds (onramp.hold) and those moved with tokens
    account_cache: AccountCache = field(default_factory=AccountCache)
    stripe: StripeGateway | None = None  # None: the card onramp is not configured

    @classmethod
    async def start(cls, settings: Settings, *, writes_trust: bool = True) -> Services:
        """The services of one process. Only the API (``serve``) ``writes_trust``: it makes the
        database's trusted utilities those of its ``OVPP_TENANTS``; the relayer and the
        operator's commands read trust and never change it, whatever their environment holds."""
        db = Database(settings.resolved_database_url, pool_size=settings.database_pool_size)
        profile = profile_from_settings(settings)
        chain = ChainClient(
            rpc_url=settings.resolved_rpc_url,
            profile=profile,
            timeout_seconds=settings.rpc_timeout_seconds,
        )
        addresses = resolve_addresses(settings, profile.chain_id)
        if addresses is None:
            raise ConfigurationError(
                f"no contract addresses for chain {profile.chain_id}: run `ovpp-wallet deploy` "
                f"(writes {address_book_path(settings, profile.chain_id)}) or set "
                "OVPP_OVPP_TOKEN_ADDRESS, OVPP_STABLECOIN_ADDRESS and OVPP_FORWARDER_ADDRESS"
            )
        await chain.connect(addresses)
        if writes_trust:
            await sync_tenants(db, settings)
        http = httpx.AsyncClient(timeout=10.0)
        validator = AccessTokenValidator(
            issuers=IssuerDirectory(lambda: trusted_issuers(db)),
            jwks=JwksCache(http, ttl_seconds=settings.jwks_cache_seconds),
            leeway_seconds=settings.jwt_leeway_seconds,
        )
        if settings.treasury_address:
            treasury = settings.treasury_address
        elif profile.is_local:
            treasury = LOCAL_TREASURY_ADDRESS
        else:
            raise ConfigurationError("OVPP_TREASURY_ADDRESS is required on a real chain")
        oracle = FixedPriceOracle(
            {
                TokenKind.NATIVE: settings.price_native_usd,
                TokenKind.OVPP: settings.price_ovpp_usd,
                TokenKind.STABLECOIN: settings.price_stablecoin_usd,
            }
        )
        return cls(
            settings=settings,
            db=db,
            chain=chain,
            keyring=load_keyring(settings),
            token_validator=validator,
            http=http,
            price_oracle=oracle,
            treasury_address=treasury,
            forwarder_domain_separator=domain_separator(
                chain_id=profile.chain_id, forwarder=addresses.forwarder
            ),
            held_funds=following_tokens(card_hold(settings)),
            stripe=StripeGateway.from_settings(settings),
        )

    async def close(self) -> None:
        if self.stripe is not None:
            await self.stripe.close()
        await self.http.aclose()
        await self.chain.close()
        await self.db.dispose()
