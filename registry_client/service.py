"""The routing service behind an interface: ``OnChainRoutingService`` resolves from the
on-chain registry; a remote OpenVPP routing service can implement the same ``RoutingService``
and replace it without the enrollment code noticing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chain.calls import Call
from registry_client.onchain import OnChainRegistry
from registry_client.routing import device_id_of, model_id_of, route
from registry_client.types import DeviceType, RoutingRequest, RoutingResult


@dataclass(frozen=True)
class AwarenessCount:
    """Grid-level device awareness: active connections per program and device type."""

    program_id: bytes
    external_id: str
    device_type: DeviceType
    active_connections: int


class RoutingService(Protocol):
    async def route(self, request: RoutingRequest) -> RoutingResult: ...

    def connect(self, result: RoutingResult, *, sponsored_owner: str | None = None) -> Call: ...

    def disconnect(self, connection_id: bytes) -> Call: ...

    async def awareness(self, utility_id: bytes) -> list[AwarenessCount]: ...


class OnChainRoutingService:
    def __init__(self, registry: OnChainRegistry) -> None:
        self.registry = registry

    async def route(self, request: RoutingRequest) -> RoutingResult:
        program_id = request.program_id
        device_id = device_id_of(request.make, request.model, request.serial)
        return route(
            request,
            utility=await self.registry.utility(request.utility_id),
            program=await self.registry.program(program_id),
            model=await self.registry.device_model(model_id_of(request.make, request.model)),
            already_connected=await self.registry.active_connection(device_id, program_id)
            is not None,
        )

    def connect(self, result: RoutingResult, *, sponsored_owner: str | None = None) -> Call:
        if sponsored_owner is not None:
            return self.registry.connect_sponsored(
                owner=sponsored_owner,
                device_id=result.device_id,
                model_id=result.model_id,
                program_id=result.program_id,
                protocol=result.protocol,
            )
        return self.registry.connect(
            device_id=result.device_id,
            model_id=result.model_id,
            program_id=result.program_id,
            protocol=result.protocol,
        )

    def disconnect(self, connection_id: bytes) -> Call:
        return self.registry.disconnect(connection_id)

    async def awareness(self, utility_id: bytes) -> list[AwarenessCount]:
        counts = []
        for program_id in await self.registry.program_ids_of(utility_id):
            program = await self.registry.program(program_id)
            if program is None:
                continue
            for device_type in sorted(program.eligible_device_types):
                counts.append(
                    AwarenessCount(
                        program_id=program_id,
                        external_id=program.external_id,
                        device_type=device_type,
                        active_connections=await self.registry.active_by_type(
                            program_id, device_type
                        ),
                    )
                )
        return counts
