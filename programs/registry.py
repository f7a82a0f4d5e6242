"""The OpenVPP registry and routing service this process talks to, and the OVPP token."""

from __future__ import annotations

from chain.tokens import TokenInfo, TokenKind
from core.errors import NotFound
from programs.deps import ProgramServices
from registry_client.onchain import OnChainRegistry
from registry_client.service import OnChainRoutingService, RoutingService


def registry_of(services: ProgramServices) -> OnChainRegistry:
    addresses = services.chain.addresses
    if addresses is None or not addresses.registry:
        raise NotFound("the OpenVPP registry is not deployed on this chain")
    return OnChainRegistry(services.chain.web3, addresses.registry)


def routing_of(services: ProgramServices) -> RoutingService:
    """The routing service in use: the on-chain resolver (a remote one would plug in here)."""
    return OnChainRoutingService(registry_of(services))


def ovpp_token(services: ProgramServices) -> TokenInfo:
    return next(t for t in services.chain.tokens if t.kind == TokenKind.OVPP)
