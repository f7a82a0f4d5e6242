"""The OpenVPP registry and routing service this process talks to, and the OVPP token."""

from __future__ import annotations

from chain.client import ChainClient
from chain.tokens import TokenInfo, TokenKind
from core.errors import NotFound
from registry_client.onchain import OnChainRegistry
from registry_client.service import OnChainRoutingService, RoutingService


def registry_of(chain: ChainClient) -> OnChainRegistry:
    addresses = chain.addresses
    if addresses is None or not addresses.registry:
        raise NotFound("the OpenVPP registry is not deployed on this chain")
    return OnChainRegistry(chain.web3, addresses.registry)


def routing_of(chain: ChainClient) -> RoutingService:
    """The routing service in use: the on-chain resolver (a remote one would plug in here)."""
    return OnChainRoutingService(registry_of(chain))


def ovpp_token(chain: ChainClient) -> TokenInfo:
    return next(t for t in chain.tokens if t.kind == TokenKind.OVPP)
