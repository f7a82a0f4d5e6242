"""The committed contract build (contracts/build/*.json) matches the sources, targets the
Odyssey EVM (shanghai: no Cancun-only opcodes), and exposes what the backend calls."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPO_ROOT / "contracts" / "build"
CONTRACTS = ("OVPPToken", "USDStablecoin", "OVPPForwarder", "OVPPRegistry", "RewardsDistributor")

# EIP-170 (runtime code) and EIP-3860 (init code, Shanghai) size limits.
MAX_RUNTIME_BYTES = 24_576
MAX_INITCODE_BYTES = 2 * MAX_RUNTIME_BYTES

# Opcodes introduced by Cancun; Odyssey (go-ethereum 1.12) rejects them.
CANCUN_OPCODES = {
    0x5C: "TLOAD",
    0x5D: "TSTORE",
    0x5E: "MCOPY",
    0x49: "BLOBHASH",
    0x4A: "BLOBBASEFEE",
}
PUSH1, PUSH32 = 0x60, 0x7F

TOKEN_FUNCTIONS = {
    "mint",
    "balanceOf",
    "transfer",
    "permit",
    "nonces",
    "DOMAIN_SEPARATOR",
    "decimals",
    "isTrustedForwarder",
}
FORWARDER_FUNCTIONS = {"execute", "executeAll", "executeBatch", "verify", "nonces", "eip712Domain"}

# The registry calls the backend and off-chain catalog encode, with their exact signatures
# (a changed parameter list changes the selector).
REGISTRY_FUNCTIONS = {
    "registerVendor(address)",
    "registerUtility(bytes32,address,string,string,string,string[],address,bytes32)",
    "updateUtility(bytes32,string,string,string,string[],address,bytes32)",
    "setControlEndpoint(bytes32,bytes32,string)",
    "transferUtilityAdmin(bytes32,address)",
    "upsertProgram(bytes32,string,bytes32[],uint8,uint32,uint32,uint32,uint256,address,bool)",
    "registerDeviceModel(string,string,uint8,uint32,uint32,uint32,uint32,bytes32[],string,bytes32)",
    "updateDeviceModel(bytes32,uint8,uint32,uint32,uint32,uint32,bytes32[],string,bytes32)",
    "connect(bytes32,bytes32,bytes32,bytes32)",
    "connectSponsored(address,bytes32,bytes32,bytes32,bytes32)",
    "disconnect(bytes32)",
    "getUtility(bytes32)",
    "getProgram(bytes32)",
    "getDeviceModel(bytes32)",
    "getConnection(bytes32)",
    "activeConnectionOf(bytes32,bytes32)",
    "activeConnectionsByType(bytes32,uint8)",
    "controlEndpoint(bytes32,bytes32)",
    "utilityProtocols(bytes32)",
    "programIdsOf(bytes32)",
    "modelIds()",
    "modelCount()",
    "connectionCount()",
    "utilityIdOf(string)",
    "programIdOf(bytes32,string)",
    "modelIdOf(string,string)",
    "deviceIdOf(string,string,string)",
    "ovppToken()",
    "isTrustedForwarder(address)",
    "hasRole(bytes32,address)",
    "REGISTRAR_ROLE()",
    "VENDOR_ROLE()",
}
REGISTRY_EVENTS = {
    "VendorRegistered(address)",
    "UtilityRegistered(bytes32,address)",
    "UtilityDetailsSet(bytes32,string,string,string,string[],address,bytes32)",
    "UtilityAdminTransferred(bytes32,address,address)",
    "ControlEndpointSet(bytes32,bytes32,string)",
    "ProgramUpserted(bytes32,bytes32,string,uint256,address,bool,bool)",
    "DeviceModelRegistered(bytes32,address,string,string)",
    "DeviceModelDetailsSet(bytes32,uint8,uint32,uint32,uint32,uint32,bytes32[],string,bytes32)",
    "Connected(bytes32,bytes32,bytes32,address,address,uint256,bytes32)",
    "Disconnected(bytes32,bytes32,bytes32,address)",
}

# What the settlement (programs/rewards) calls and reads, with their exact signatures.
DISTRIBUTOR_FUNCTIONS = {
    "publish(bytes32,bytes32,uint256,uint32)",
    "claim(bytes32,(uint256,bytes32,address,uint256,uint64,uint16),bytes32[])",
    "claimMany(bytes32,(uint256,bytes32,address,uint256,uint64,uint16)[],bytes32[][])",
    "verify(bytes32,bytes32,(uint256,bytes32,address,uint256,uint64,uint16),bytes32[])",
    "verifyClaim(bytes32,(uint256,bytes32,address,uint256,uint64,uint16),bytes32[])",
    "leafHash(bytes32,(uint256,bytes32,address,uint256,uint64,uint16))",
    "eventIdOf(address,bytes32)",
    "isClaimed(bytes32,uint256)",
    "distribution(bytes32)",
    "reputationOf(bytes32)",
    "ovppToken()",
    "isTrustedForwarder(address)",
}


def _artifact(name: str) -> dict:
    return json.loads((BUILD_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _code_section(code: bytes) -> bytes:
    """Strip the CBOR metadata solc appends (its length is the last two bytes, big-endian)."""
    if len(code) >= 2:
        meta_len = int.from_bytes(code[-2:], "big")
        # Only trust it when it is plausible and starts with a CBOR map header (0xa0..0xbf).
        if 0 < meta_len <= len(code) - 2 and 0xA0 <= code[-2 - meta_len] <= 0xBF:
            return code[: -2 - meta_len]
    return code


def _init_code(artifact: dict) -> bytes:
    """The constructor part of the creation code: everything before the embedded runtime code
    (data the optimizer may append after it, e.g. a 32-byte constant, is not code)."""
    creation = bytes.fromhex(artifact["bytecode"][2:])
    runtime = bytes.fromhex(artifact["deployedBytecode"][2:])
    start = creation.find(runtime)
    assert start > 0, f"{artifact['contractName']}: runtime code not found in creation code"
    return creation[:start]


def _opcodes(code: bytes):
    """Yield (offset, opcode), skipping PUSH1..PUSH32 immediate data."""
    pc = 0
    while pc < len(code):
        op = code[pc]
        yield pc, op
        pc += 1 + (op - PUSH1 + 1 if PUSH1 <= op <= PUSH32 else 0)


def test_build_matches_sources():
    node = shutil.which("node")
    assert node is not None, "node is required to check the contract build"
    result = subprocess.run(
        [node, str(REPO_ROOT / "contracts" / "compile.mjs"), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"contracts/compile.mjs --check exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


@pytest.mark.parametrize("name", CONTRACTS)
def test_artifact_shape(name):
    artifact = _artifact(name)
    assert list(artifact) == [
        "contractName",
        "sourceName",
        "compiler",
        "abi",
        "bytecode",
        "deployedBytecode",
    ]
    assert artifact["contractName"] == name
    assert artifact["sourceName"] == f"contracts/src/{name}.sol"
    assert artifact["compiler"]["evmVersion"] == "shanghai"
    assert artifact["bytecode"].startswith("0x") and len(artifact["bytecode"]) > 2
    assert artifact["deployedBytecode"].startswith("0x") and len(artifact["deployedBytecode"]) > 2


def test_every_build_file_is_checked():
    """The scans below are parametrized over CONTRACTS: no build file may escape them."""
    assert sorted(p.stem for p in BUILD_DIR.glob("*.json")) == sorted(CONTRACTS)


@pytest.mark.parametrize("part", ["runtime", "constructor"])
@pytest.mark.parametrize("name", CONTRACTS)
def test_no_cancun_opcodes(name, part):
    artifact = _artifact(name)
    if part == "runtime":
        code = _code_section(bytes.fromhex(artifact["deployedBytecode"][2:]))
    else:
        code = _init_code(artifact)
    found = [
        f"{CANCUN_OPCODES[op]} (0x{op:02x}) at offset {pc}"
        for pc, op in _opcodes(code)
        if op in CANCUN_OPCODES
    ]
    assert not found, f"{name} ({part}) uses Cancun-only opcodes: {', '.join(found)}"


@pytest.mark.parametrize("name", CONTRACTS)
def test_code_size_limits(name):
    artifact = _artifact(name)
    runtime = (len(artifact["deployedBytecode"]) - 2) // 2
    creation = (len(artifact["bytecode"]) - 2) // 2
    assert runtime <= MAX_RUNTIME_BYTES, f"{name}: runtime code {runtime} bytes > EIP-170 limit"
    assert creation <= MAX_INITCODE_BYTES, f"{name}: init code {creation} bytes > EIP-3860 limit"


def test_opcode_walker_skips_push_data():
    # PUSH2 0x5c5d, PUSH1 0x5e, then a real MCOPY, then metadata-like tail.
    code = bytes([0x61, 0x5C, 0x5D, 0x60, 0x5E, 0x5E])
    assert [op for _, op in _opcodes(code)] == [0x61, 0x60, 0x5E]
    with_meta = code + bytes([0xA1, 0x5C]) + (2).to_bytes(2, "big")
    assert _code_section(with_meta) == code


def _function_names(name: str) -> set[str]:
    return {item["name"] for item in _artifact(name)["abi"] if item.get("type") == "function"}


@pytest.mark.parametrize("name", ["OVPPToken", "USDStablecoin"])
def test_token_abi(name):
    missing = TOKEN_FUNCTIONS - _function_names(name)
    assert not missing, f"{name} ABI lacks {sorted(missing)}"


def test_forwarder_abi():
    missing = FORWARDER_FUNCTIONS - _function_names("OVPPForwarder")
    assert not missing, f"OVPPForwarder ABI lacks {sorted(missing)}"


def _abi_type(item: dict) -> str:
    if item["type"].startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){item['type'][len('tuple') :]}"
    return item["type"]


def _signatures(name: str, kind: str) -> set[str]:
    return {
        f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
        for item in _artifact(name)["abi"]
        if item.get("type") == kind
    }


def test_registry_abi():
    missing = REGISTRY_FUNCTIONS - _signatures("OVPPRegistry", "function")
    assert not missing, f"OVPPRegistry ABI lacks functions {sorted(missing)}"
    missing = REGISTRY_EVENTS - _signatures("OVPPRegistry", "event")
    assert not missing, f"OVPPRegistry ABI lacks events {sorted(missing)}"
    # Reverts are custom errors: the contract has no revert strings (Error(string)).
    assert "AlreadyConnected(bytes32,bytes32,bytes32)" in _signatures("OVPPRegistry", "error")
    assert b"\x08\xc3\x79\xa0" not in bytes.fromhex(
        _artifact("OVPPRegistry")["deployedBytecode"][2:]
    )


def test_distributor_abi():
    missing = DISTRIBUTOR_FUNCTIONS - _signatures("RewardsDistributor", "function")
    assert not missing, f"RewardsDistributor ABI lacks functions {sorted(missing)}"
    assert b"\x08\xc3\x79\xa0" not in bytes.fromhex(
        _artifact("RewardsDistributor")["deployedBytecode"][2:]
    )
