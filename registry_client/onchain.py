"""The typed client of ``OVPPRegistry``: reads as records, writes as forwarder ``Call``s that a
custodial wallet signs and the relayer submits (so nobody but the relayer needs gas)."""

from __future__ import annotations

from typing import Any

from eth_abi import encode
from eth_hash.auto import keccak
from web3 import AsyncWeb3

from chain.artifacts import artifact
from chain.calls import Call
from registry_client.types import (
    PROTOCOL_BY_ID,
    DeviceModelRecord,
    DeviceType,
    ProgramRecord,
    UtilityRecord,
    protocol_id,
)

ZERO = "0x0000000000000000000000000000000000000000"
CONNECT_CALL_GAS = 450_000  # measured 258k–368k (helper run, 16 protocols: 368k)
APPROVE_CALL_GAS = 60_000
DISCONNECT_CALL_GAS = 120_000
ADMIN_CALL_GAS = 600_000
REGISTER_UTILITY_CALL_GAS = 1_400_000  # a new record, its territory and fee recipient


def utility_id_of(slug: str) -> bytes:
    return keccak(slug.encode())


def program_id_of(utility_id: bytes, external_id: str) -> bytes:
    return keccak(encode(["bytes32", "string"], [utility_id, external_id]))


def device_types_of(mask: int) -> frozenset[DeviceType]:
    return frozenset(t for t in DeviceType if mask & (1 << t.value))


def mask_of(types: list[DeviceType] | frozenset[DeviceType]) -> int:
    mask = 0
    for device_type in types:
        mask |= 1 << int(device_type)
    return mask


def _protocol_names(ids: list[bytes]) -> tuple[str, ...]:
    return tuple(PROTOCOL_BY_ID.get(bytes(item), "0x" + bytes(item).hex()) for item in ids)


class OnChainRegistry:
    def __init__(self, web3: AsyncWeb3, address: str) -> None:
        self.web3 = web3
        self.address = AsyncWeb3.to_checksum_address(address)
        self.contract = web3.eth.contract(
            address=self.address, abi=artifact("OVPPRegistry").abi, decode_tuples=True
        )

    # -- reads ------------------------------------------------------------------------------

    async def utility(self, utility_id: bytes) -> UtilityRecord | None:
        raw = await self.contract.functions.getUtility(utility_id).call()
        if not raw.exists:
            return None
        protocols = await self.contract.functions.utilityProtocols(utility_id).call()
        endpoints: dict[str, str] = {}
        for pid in protocols:
            endpoint = await self.contract.functions.controlEndpoint(utility_id, pid).call()
            if endpoint:
                endpoints[PROTOCOL_BY_ID.get(bytes(pid), "0x" + bytes(pid).hex())] = endpoint
        return UtilityRecord(
            utility_id=utility_id,
            admin=raw.admin,
            name=raw.name,
            country=raw.country,
            region=raw.region,
            postal_codes=tuple(raw.postalCodes),
            fee_recipient=raw.feeRecipient,
            ca_cert_fingerprint=bytes(raw.caCertFingerprint),
            control_endpoints=endpoints,
        )

    async def is_registrar(self, address: str) -> bool:
        """Whether ``address`` holds ``REGISTRAR_ROLE`` (may register utilities)."""
        role = await self.contract.functions.REGISTRAR_ROLE().call()
        return bool(await self.contract.functions.hasRole(role, address).call())

    async def program(self, program_id: bytes) -> ProgramRecord | None:
        raw = await self.contract.functions.getProgram(program_id).call()
        if not raw.exists:
            return None
        return ProgramRecord(
            program_id=program_id,
            utility_id=bytes(raw.utilityId),
            external_id=raw.externalId,
            protocols=_protocol_names(raw.protocols),
            eligible_device_types=device_types_of(raw.eligibleDeviceTypes),
            min_charge_w=raw.minChargeW,
            min_discharge_w=raw.minDischargeW,
            min_energy_wh=raw.minEnergyWh,
            connection_fee=int(raw.connectionFee),
            sponsor=None if raw.sponsor == ZERO else raw.sponsor,
            active=raw.active,
            active_connections=int(raw.activeConnections),
        )

    async def device_model(self, model_id: bytes) -> DeviceModelRecord | None:
        raw = await self.contract.functions.getDeviceModel(model_id).call()
        if not raw.exists:
            return None
        return DeviceModelRecord(
            model_id=model_id,
            vendor=raw.vendor,
            make=raw.make,
            model=raw.model,
            device_type=DeviceType(raw.deviceType),
            max_charge_w=raw.maxChargeW,
            max_discharge_w=raw.maxDischargeW,
            energy_wh=raw.energyWh,
            nominal_voltage_v=raw.nominalVoltageV,
            protocols=_protocol_names(raw.protocols),
            vendor_endpoint=raw.vendorEndpoint,
            vendor_cert_fingerprint=bytes(raw.vendorCertFingerprint),
        )

    async def device_models(self) -> list[DeviceModelRecord]:
        ids = await self.contract.functions.modelIds().call()
        records = [await self.device_model(bytes(model_id)) for model_id in ids]
        return [record for record in records if record is not None]

    async def program_ids_of(self, utility_id: bytes) -> list[bytes]:
        return [
            bytes(item) for item in await self.contract.functions.programIdsOf(utility_id).call()
        ]

    async def active_connection(self, device_id: bytes, program_id: bytes) -> bytes | None:
        connection_id = bytes(
            await self.contract.functions.activeConnectionOf(device_id, program_id).call()
        )
        return None if connection_id == bytes(32) else connection_id

    async def connection(self, connection_id: bytes) -> Any:
        return await self.contract.functions.getConnection(connection_id).call()

    async def active_by_type(self, program_id: bytes, device_type: DeviceType) -> int:
        return int(
            await self.contract.functions.activeConnectionsByType(
                program_id, int(device_type)
            ).call()
        )

    def error_name(self, error: Exception) -> str:
        """The registry's custom error a revert carries (``UtilityExists``…), by its selector;
        the error's own text when it is not one of the registry's."""
        data = getattr(error, "data", None) or (error.args[0] if error.args else "")
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            for entry in self.contract.abi:
                if entry.get("type") != "error":
                    continue
                types = ",".join(item["type"] for item in entry.get("inputs", []))
                if keccak(f"{entry['name']}({types})".encode())[:4].hex() == data[2:10]:
                    return str(entry["name"])
        return str(error)

    # -- writes, as calls for a signer --------------------------------------------------------

    def _call(self, function: str, *args: Any, gas: int) -> Call:
        data = self.contract.encode_abi(function, args=list(args))
        return Call(target=self.address, data=bytes.fromhex(data[2:]), gas=gas)

    def connect(
        self, *, device_id: bytes, model_id: bytes, program_id: bytes, protocol: str
    ) -> Call:
        return self._call(
            "connect", device_id, model_id, program_id, protocol_id(protocol), gas=CONNECT_CALL_GAS
        )

    def connect_sponsored(
        self, *, owner: str, device_id: bytes, model_id: bytes, program_id: bytes, protocol: str
    ) -> Call:
        return self._call(
            "connectSponsored",
            owner,
            device_id,
            model_id,
            program_id,
            protocol_id(protocol),
            gas=CONNECT_CALL_GAS,
        )

    def disconnect(self, connection_id: bytes) -> Call:
        return self._call("disconnect", connection_id, gas=DISCONNECT_CALL_GAS)

    def register_utility(
        self,
        *,
        utility_id: bytes,
        admin: str,
        name: str,
        country: str,
        region: str,
        postal_codes: list[str],
        fee_recipient: str,
        ca_cert_fingerprint: bytes,
    ) -> Call:
        """The registrar's call (``REGISTRAR_ROLE``): a new utility with ``admin`` as its admin."""
        return self._call(
            "registerUtility",
            utility_id,
            admin,
            name,
            country,
            region,
            postal_codes,
            fee_recipient,
            ca_cert_fingerprint,
            gas=REGISTER_UTILITY_CALL_GAS,
        )

    def update_utility(
        self,
        *,
        utility_id: bytes,
        name: str,
        country: str,
        region: str,
        postal_codes: list[str],
        fee_recipient: str,
        ca_cert_fingerprint: bytes,
    ) -> Call:
        return self._call(
            "updateUtility",
            utility_id,
            name,
            country,
            region,
            postal_codes,
            fee_recipient,
            ca_cert_fingerprint,
            gas=ADMIN_CALL_GAS,
        )

    def set_control_endpoint(self, *, utility_id: bytes, protocol: str, endpoint: str) -> Call:
        return self._call(
            "setControlEndpoint", utility_id, protocol_id(protocol), endpoint, gas=ADMIN_CALL_GAS
        )

    def upsert_program(
        self,
        *,
        utility_id: bytes,
        external_id: str,
        protocols: list[str],
        eligible_device_types: list[DeviceType],
        min_charge_w: int,
        min_discharge_w: int,
        min_energy_wh: int,
        connection_fee: int,
        sponsor: str | None,
        active: bool,
    ) -> Call:
        return self._call(
            "upsertProgram",
            utility_id,
            external_id,
            [protocol_id(p) for p in protocols],
            mask_of(eligible_device_types),
            min_charge_w,
            min_discharge_w,
            min_energy_wh,
            connection_fee,
            sponsor or ZERO,
            active,
            gas=ADMIN_CALL_GAS,
        )
