"""Chain profiles: which EVM chain the backend talks to, and the facts that differ per chain."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import ConfigurationError
from core.settings import Settings

# Anvil's first well-known development account (mnemonic "test test … junk"). Public knowledge:
# accepted only on the local profile.
ANVIL_DEV_PRIVATE_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
# Anvil's third account: the demo device vendor on the local chain.
ANVIL_VENDOR_PRIVATE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"


@dataclass(frozen=True)
class ChainProfile:
    key: str
    chain_id: int
    name: str
    native_symbol: str
    native_name: str
    is_local: bool


PROFILES: dict[str, ChainProfile] = {
    "local": ChainProfile("local", 31337, "Local anvil", "ETH", "Ether (local)", True),
    "odyssey-testnet": ChainProfile(
        "odyssey-testnet", 131313, "Odyssey testnet", "DIONE", "Dione", False
    ),
    "odyssey": ChainProfile("odyssey", 153153, "Odyssey", "DIONE", "Dione", False),
}


def profile_from_settings(settings: Settings) -> ChainProfile:
    if settings.chain == "custom":
        if settings.chain_id is None or not settings.rpc_url:
            raise ConfigurationError(
                "the custom chain profile needs OVPP_CHAIN_ID and OVPP_RPC_URL"
            )
        return ChainProfile(
            "custom",
            settings.chain_id,
            f"EVM chain {settings.chain_id}",
            "ETH",
            "Native token",
            False,
        )
    profile = PROFILES[settings.chain]
    if settings.chain_id is not None and settings.chain_id != profile.chain_id:
        raise ConfigurationError(
            f"OVPP_CHAIN_ID {settings.chain_id} contradicts the {profile.key} profile "
            f"({profile.chain_id})"
        )
    return profile


def deployer_key(settings: Settings, profile: ChainProfile) -> str:
    if settings.deployer_private_key is not None:
        return settings.deployer_private_key.get_secret_value()
    if profile.is_local:
        return ANVIL_DEV_PRIVATE_KEY
    raise ConfigurationError("OVPP_DEPLOYER_PRIVATE_KEY is required to deploy to a real chain")


def vendor_key(settings: Settings, profile: ChainProfile) -> str:
    if settings.vendor_private_key is not None:
        return settings.vendor_private_key.get_secret_value()
    if profile.is_local:
        return ANVIL_VENDOR_PRIVATE_KEY
    raise ConfigurationError("OVPP_VENDOR_PRIVATE_KEY is required to register device models")
