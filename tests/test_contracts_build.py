"""The committed contract build (contracts/build/*.json) matches the sources, targets the
Odyssey EVM (shanghai: no Cancun-only opcodes), and exposes what the backend calls."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "contracts" / "build"
CONTRACTS = ("OVPPToken", "USDStablecoin", "OVPPForwarder")

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
FORWARDER_FUNCTIONS = {"execute", "executeBatch", "verify", "nonces", "eip712Domain"}


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


@pytest.mark.parametrize("name", CONTRACTS)
def test_no_cancun_opcodes(name):
    code = _code_section(bytes.fromhex(_artifact(name)["deployedBytecode"][2:]))
    found = [
        f"{CANCUN_OPCODES[op]} (0x{op:02x}) at offset {pc}"
        for pc, op in _opcodes(code)
        if op in CANCUN_OPCODES
    ]
    assert not found, f"{name} uses Cancun-only opcodes: {', '.join(found)}"


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
