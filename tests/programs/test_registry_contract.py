"""The on-chain Registry Service (contracts/src/OVPPRegistry.sol) on a real anvil at shanghai.

One chain per module: forwarder, OVPP token and registry deployed once; every test creates its
own utilities, programs, models and devices (fresh ids), so the tests do not depend on order.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_hash.auto import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from chain.artifacts import artifact
from chain.deploy import Deployer
from chain.erc20 import erc20_transfer_data
from chain.profiles import ANVIL_DEV_PRIVATE_KEY
from devsupport.anvil import LocalChain
from relayer.forwarder import ForwardRequest, domain_separator, forwarder_calldata, sign_request
from tests.support.ports import free_port

OVPP = 10**18
FEE = 5 * OVPP
ZERO = "0x" + "00" * 20
ZERO32 = b"\x00" * 32

PROTOCOL_NAMES = (
    "OPENADR_2_0B",
    "OPENADR_3",
    "IEEE_2030_5",
    "OCPP_2_0_1",
    "OCPP_1_6J",
    "MATTER",
)
P = {name: keccak(name.encode()) for name in PROTOCOL_NAMES}

# DeviceType enum order in the contract.
BATTERY, EV_CHARGER, SOLAR_INVERTER, THERMOSTAT, HEAT_PUMP, EV = range(6)
ALL_TYPES = 0b111111
STATUS_NONE, STATUS_ACTIVE, STATUS_DISCONNECTED = range(3)

_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


# ---------------------------------------------------------------------------- off-chain ids


def utility_id_of(slug: str) -> bytes:
    return keccak(slug.encode())


def program_id_of(utility_id: bytes, external_id: str) -> bytes:
    return keccak(encode(["bytes32", "string"], [utility_id, external_id]))


def model_id_of(make: str, model: str) -> bytes:
    return keccak(encode(["string", "string"], [make, model]))


def device_id_of(make: str, model: str, serial: str) -> bytes:
    return keccak(encode(["string", "string", "string"], [make, model, serial]))


# ---------------------------------------------------------------------------- custom errors


def _error_types() -> dict[str, tuple[bytes, list[str]]]:
    """name -> (selector, argument types) over the registry's, token's and forwarder's ABIs."""
    errors: dict[str, tuple[bytes, list[str]]] = {}
    for name in ("OVPPRegistry", "OVPPToken", "OVPPForwarder"):
        for item in artifact(name).abi:
            if item["type"] == "error":
                types = [i["type"] for i in item["inputs"]]
                signature = f"{item['name']}({','.join(types)})"
                errors[item["name"]] = (keccak(signature.encode())[:4], types)
    return errors


ERRORS = _error_types()


def revert_data(exc: Exception) -> bytes:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):  # some providers nest it
        data = data.get("data")
    assert isinstance(data, str), f"no revert data on {exc!r}"
    return bytes.fromhex(data.removeprefix("0x"))


def assert_error(data: bytes, name: str, *args: Any) -> None:
    selector, types = ERRORS[name]
    names = {sel: n for n, (sel, _) in ERRORS.items()}
    assert data[:4] == selector, f"expected {name}, got {names.get(data[:4], data[:4].hex())}"
    if args:
        decoded = tuple(
            Web3.to_checksum_address(value) if kind == "address" else value
            for kind, value in zip(types, decode(types, data[4:]), strict=True)
        )
        assert decoded == args


def expect_revert(fn: Any, sender: str, name: str, *args: Any) -> None:
    """The call from `sender` reverts with the custom error `name` (and these arguments)."""
    with pytest.raises((ContractCustomError, ContractLogicError)) as info:
        fn.call({"from": sender})
    assert_error(revert_data(info.value), name, *args)


# ---------------------------------------------------------------------------- the chain


@dataclass
class Env:
    chain: LocalChain
    w3: Web3
    deployer: Deployer
    forwarder: Any
    token: Any
    registry: Any
    registrar: str
    deploy_gas: dict[str, int]
    accounts: list[str]

    # -- transactions -------------------------------------------------------------------

    def send(self, fn: Any, sender: str, *, gas: int | None = None) -> Any:
        """Send from an unlocked anvil account; returns the receipt (status not checked)."""
        tx: dict[str, Any] = {"from": sender}
        if gas is not None:  # skip estimation so a reverting call is mined
            tx["gas"] = gas
        tx_hash = fn.transact(tx)
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)

    def ok(self, fn: Any, sender: str) -> Any:
        receipt = self.send(fn, sender)
        assert receipt["status"] == 1
        return receipt

    def events(self, receipt: Any, name: str, contract: Any = None) -> list[Any]:
        contract = contract or self.registry
        events = getattr(contract.events, name)().process_receipt(receipt, errors=DISCARD)
        return [e["args"] for e in events]

    def mint(self, to: str, amount: int) -> None:
        self.deployer.mint(token=self.token.address, to=to, amount=amount)

    def balance(self, owner: str) -> int:
        return int(self.token.functions.balanceOf(owner).call())

    # -- registry set-up ------------------------------------------------------------------

    def new_utility(
        self, admin: str, *, endpoints: dict[str, str] | None = None
    ) -> tuple[bytes, str]:
        """A registered utility with control endpoints; returns (utilityId, feeRecipient)."""
        slug = unique("utility")
        utility_id = utility_id_of(slug)
        fee_recipient = Account.create().address
        self.ok(
            self.registry.functions.registerUtility(
                utility_id,
                admin,
                f"Utility {slug}",
                "US",
                "US-CA",
                ["94102-94110", "94114"],
                fee_recipient,
                keccak(b"ca-cert-" + slug.encode()),
            ),
            self.registrar,
        )
        for name, url in (endpoints or {"OPENADR_2_0B": "https://vtn.example/2b"}).items():
            self.ok(self.registry.functions.setControlEndpoint(utility_id, P[name], url), admin)
        return utility_id, fee_recipient

    def upsert_program(self, utility_id: bytes, admin: str, **fields: Any) -> Any:
        values = {
            "external_id": unique("program"),
            "protocols": ["OPENADR_2_0B"],
            "types": ALL_TYPES,
            "min_charge": 0,
            "min_discharge": 0,
            "min_energy": 0,
            "fee": FEE,
            "sponsor": ZERO,
            "active": True,
        }
        values.update(fields)
        return self.registry.functions.upsertProgram(
            utility_id,
            values["external_id"],
            [P[n] for n in values["protocols"]],
            values["types"],
            values["min_charge"],
            values["min_discharge"],
            values["min_energy"],
            values["fee"],
            values["sponsor"],
            values["active"],
        )

    def new_program(self, utility_id: bytes, admin: str, **fields: Any) -> bytes:
        external_id = fields.setdefault("external_id", unique("program"))
        self.ok(self.upsert_program(utility_id, admin, **fields), admin)
        return program_id_of(utility_id, external_id)

    def model_call(self, vendor_fn: Any, **fields: Any) -> Any:
        values = {
            "device_type": BATTERY,
            "charge": 5000,
            "discharge": 5000,
            "energy": 13500,
            "voltage": 240,
            "protocols": ["OPENADR_2_0B", "IEEE_2030_5"],
            "endpoint": "https://vendor.example/der",
            "fingerprint": keccak(b"vendor-cert"),
        }
        values.update(fields)
        return vendor_fn(
            values["device_type"],
            values["charge"],
            values["discharge"],
            values["energy"],
            values["voltage"],
            [P[n] for n in values["protocols"]],
            values["endpoint"],
            values["fingerprint"],
        )

    def new_model(self, vendor: str, **fields: Any) -> tuple[bytes, str, str]:
        """Registers a model; returns (modelId, make, model)."""
        make, model = "Acme Energy", unique("PowerBox")

        def register(*rest: Any) -> Any:
            return self.registry.functions.registerDeviceModel(make, model, *rest)

        self.ok(self.model_call(register, **fields), vendor)
        return model_id_of(make, model), make, model

    def device(self, make: str, model: str) -> bytes:
        return device_id_of(make, model, unique("SN"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    log = tmp_path_factory.mktemp("registry-anvil") / "anvil.log"
    with LocalChain(port=free_port(), log_file=log) as chain:
        deployer = Deployer(
            rpc_url=chain.rpc_url, private_key=ANVIL_DEV_PRIVATE_KEY, progress=lambda _m: None
        )
        w3 = deployer.web3
        registrar = deployer.account.address
        forwarder = deployer.deploy("OVPPForwarder", registrar)
        token = deployer.deploy("OVPPToken", forwarder, registrar)
        registry = deployer.deploy("OVPPRegistry", forwarder, token, registrar)
        deploy_gas = _deployment_gas(
            w3, {"OVPPForwarder": forwarder, "OVPPToken": token, "OVPPRegistry": registry}
        )
        yield Env(
            chain=chain,
            w3=w3,
            deployer=deployer,
            forwarder=w3.eth.contract(address=forwarder, abi=artifact("OVPPForwarder").abi),
            token=w3.eth.contract(address=token, abi=artifact("OVPPToken").abi),
            registry=w3.eth.contract(address=registry, abi=artifact("OVPPRegistry").abi),
            registrar=registrar,
            deploy_gas=deploy_gas,
            accounts=list(w3.eth.accounts),
        )


def _deployment_gas(w3: Web3, addresses: dict[str, str]) -> dict[str, int]:
    """Gas used by each contract creation, found by scanning the (few) blocks mined so far."""
    by_address = {address: name for name, address in addresses.items()}
    gas: dict[str, int] = {}
    for number in range(1, w3.eth.block_number + 1):
        for tx_hash in w3.eth.get_block(number)["transactions"]:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            if receipt["contractAddress"] in by_address:
                gas[by_address[receipt["contractAddress"]]] = int(receipt["gasUsed"])
    return gas


@pytest.fixture(scope="module")
def roles(env: Env) -> dict[str, str]:
    """Anvil's funded accounts by role; the vendors are registered once here."""
    a = env.accounts
    named = {
        "utility_admin": a[1],
        "other_admin": a[2],
        "vendor": a[3],
        "other_vendor": a[4],
        "sponsor": a[5],
        "customer": a[6],
        "outsider": a[7],
        "relayer": a[8],
    }
    for vendor in (named["vendor"], named["other_vendor"]):
        env.ok(env.registry.functions.registerVendor(vendor), env.registrar)
    env.ok(env.forwarder.functions.setRelayer(named["relayer"], True), env.registrar)
    return named


# ---------------------------------------------------------------------------- onboarding


def test_deployment_wires_roles_token_and_forwarder(env: Env) -> None:
    registry = env.registry.functions
    assert registry.ovppToken().call() == env.token.address
    assert registry.isTrustedForwarder(env.forwarder.address).call()
    assert registry.hasRole(ZERO32, env.registrar).call()
    assert registry.hasRole(keccak(b"REGISTRAR_ROLE"), env.registrar).call()
    # The registrar administers VENDOR_ROLE (it can revoke vendors it onboarded).
    assert registry.getRoleAdmin(keccak(b"VENDOR_ROLE")).call() == keccak(b"REGISTRAR_ROLE")
    size = len(env.w3.eth.get_code(env.registry.address))
    assert size <= 24_576, f"registry runtime code is {size} bytes, over EIP-170"


def test_id_helpers_match_off_chain_hashing(env: Env) -> None:
    registry = env.registry.functions
    utility_id = utility_id_of("pge")
    assert registry.utilityIdOf("pge").call() == utility_id
    assert registry.programIdOf(utility_id, "ELRP-2025").call() == program_id_of(
        utility_id, "ELRP-2025"
    )
    assert registry.modelIdOf("Tesla", "Powerwall 3").call() == model_id_of("Tesla", "Powerwall 3")
    assert registry.deviceIdOf("Tesla", "Powerwall 3", "SN-1").call() == device_id_of(
        "Tesla", "Powerwall 3", "SN-1"
    )
    # abi.encode, not encodePacked: ("ab", "c") and ("a", "bc") are different models.
    assert model_id_of("ab", "c") != model_id_of("a", "bc")


def test_registrar_onboards_utilities_and_vendors(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin, outsider = roles["utility_admin"], roles["outsider"]
    utility_id = utility_id_of(unique("utility"))
    fee_recipient = Account.create().address
    fingerprint = keccak(b"ca")
    args = (
        utility_id,
        admin,
        "Pacific Example Electric",
        "US",
        "US-CA",
        ["94102-94110", "94114"],
        fee_recipient,
        fingerprint,
    )

    expect_revert(
        registry.registerUtility(*args),
        outsider,
        "AccessControlUnauthorizedAccount",
        outsider,
        keccak(b"REGISTRAR_ROLE"),
    )
    receipt = env.ok(registry.registerUtility(*args), env.registrar)
    [registered] = env.events(receipt, "UtilityRegistered")
    assert (registered.utilityId, registered.admin) == (utility_id, admin)
    [details] = env.events(receipt, "UtilityDetailsSet")
    assert details.postalCodes == ["94102-94110", "94114"]
    assert details.feeRecipient == fee_recipient

    utility = registry.getUtility(utility_id).call()
    assert utility == (
        admin,
        "Pacific Example Electric",
        "US",
        "US-CA",
        ["94102-94110", "94114"],
        fee_recipient,
        fingerprint,
        True,
    )
    expect_revert(registry.registerUtility(*args), env.registrar, "UtilityExists", utility_id)
    bad_country = (utility_id_of(unique("utility")), *args[1:3], "USA", *args[4:])
    expect_revert(
        registry.registerUtility(*bad_country), env.registrar, "InvalidCountryCode", "USA"
    )
    too_many = (utility_id_of(unique("utility")), *args[1:5], ["9"] * 129, *args[6:])
    expect_revert(registry.registerUtility(*too_many), env.registrar, "TooManyPostalCodes", 129)

    # Vendors: only the registrar grants VENDOR_ROLE, once (idempotent), and may revoke it.
    vendor = Account.create().address
    expect_revert(
        registry.registerVendor(vendor),
        outsider,
        "AccessControlUnauthorizedAccount",
        outsider,
        keccak(b"REGISTRAR_ROLE"),
    )
    receipt = env.ok(registry.registerVendor(vendor), env.registrar)
    assert [e.vendor for e in env.events(receipt, "VendorRegistered")] == [vendor]
    assert registry.hasRole(keccak(b"VENDOR_ROLE"), vendor).call()
    again = env.ok(registry.registerVendor(vendor), env.registrar)
    assert env.events(again, "VendorRegistered") == []
    env.ok(registry.revokeRole(keccak(b"VENDOR_ROLE"), vendor), env.registrar)
    assert not registry.hasRole(keccak(b"VENDOR_ROLE"), vendor).call()


def test_only_a_utilitys_admin_changes_it(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin, other = roles["utility_admin"], roles["other_admin"]
    utility_id, _ = env.new_utility(admin)
    env.new_utility(other)  # the other admin runs a utility of their own
    new_recipient = Account.create().address
    update = registry.updateUtility(
        utility_id, "Renamed", "US", "US-NV", ["89501"], new_recipient, keccak(b"ca2")
    )

    expect_revert(update, other, "NotUtilityAdmin", utility_id, other)
    expect_revert(
        registry.setControlEndpoint(utility_id, P["MATTER"], "https://x"),
        other,
        "NotUtilityAdmin",
        utility_id,
        other,
    )
    expect_revert(registry.transferUtilityAdmin(utility_id, other), other, "NotUtilityAdmin")
    expect_revert(
        env.upsert_program(utility_id, other), other, "NotUtilityAdmin", utility_id, other
    )
    expect_revert(env.upsert_program(utility_id, admin), env.registrar, "NotUtilityAdmin")
    unknown = utility_id_of(unique("nobody"))
    expect_revert(
        registry.updateUtility(unknown, "x", "US", "", [], new_recipient, ZERO32),
        admin,
        "UnknownUtility",
        unknown,
    )

    receipt = env.ok(update, admin)
    [details] = env.events(receipt, "UtilityDetailsSet")
    assert (details.name, details.region, details.postalCodes) == ("Renamed", "US-NV", ["89501"])
    utility = registry.getUtility(utility_id).call()
    assert utility[1:6] == ("Renamed", "US", "US-NV", ["89501"], new_recipient)  # list replaced

    # Endpoints: listed once per protocol, overwritten in place, clearable.
    receipt = env.ok(registry.setControlEndpoint(utility_id, P["MATTER"], "https://m/1"), admin)
    [set_event] = env.events(receipt, "ControlEndpointSet")
    assert (set_event.protocol, set_event.endpoint) == (P["MATTER"], "https://m/1")
    env.ok(registry.setControlEndpoint(utility_id, P["MATTER"], "https://m/2"), admin)
    assert registry.controlEndpoint(utility_id, P["MATTER"]).call() == "https://m/2"
    assert registry.utilityProtocols(utility_id).call() == [P["OPENADR_2_0B"], P["MATTER"]]
    assert registry.controlEndpoint(utility_id, P["OCPP_1_6J"]).call() == ""

    # Admin transfer: the old admin loses every right, the new one gains them.
    receipt = env.ok(registry.transferUtilityAdmin(utility_id, other), admin)
    [moved] = env.events(receipt, "UtilityAdminTransferred")
    assert (moved.previousAdmin, moved.newAdmin) == (admin, other)
    expect_revert(update, admin, "NotUtilityAdmin", utility_id, admin)
    env.ok(update, other)
    expect_revert(registry.transferUtilityAdmin(utility_id, ZERO), other, "ZeroAddress")


def test_program_upsert_creates_once_and_updates_in_place(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin = roles["utility_admin"]
    utility_id, _ = env.new_utility(admin)
    external_id = unique("ELRP")
    program_id = program_id_of(utility_id, external_id)

    created = env.upsert_program(utility_id, admin, external_id=external_id, types=1 << BATTERY)
    assert created.call({"from": admin}) == program_id  # returns the id
    receipt = env.ok(created, admin)
    [event] = env.events(receipt, "ProgramUpserted")
    assert (event.programId, event.utilityId, event.externalId, event.created) == (
        program_id,
        utility_id,
        external_id,
        True,
    )
    receipt = env.ok(
        env.upsert_program(
            utility_id,
            admin,
            external_id=external_id,
            protocols=["OPENADR_3", "MATTER"],
            types=(1 << THERMOSTAT) | (1 << HEAT_PUMP),
            min_charge=100,
            min_discharge=200,
            min_energy=300,
            fee=7,
            sponsor=roles["sponsor"],
            active=False,
        ),
        admin,
    )
    [event] = env.events(receipt, "ProgramUpserted")
    assert (event.created, event.connectionFee, event.sponsor, event.active) == (
        False,
        7,
        roles["sponsor"],
        False,
    )
    assert registry.programIdsOf(utility_id).call() == [program_id]
    assert registry.getProgram(program_id).call() == (
        utility_id,
        external_id,
        [P["OPENADR_3"], P["MATTER"]],
        (1 << THERMOSTAT) | (1 << HEAT_PUMP),
        100,
        200,
        300,
        7,
        roles["sponsor"],
        False,
        0,
        True,
    )
    second = env.new_program(utility_id, admin)
    assert registry.programIdsOf(utility_id).call() == [program_id, second]

    expect_revert(
        env.upsert_program(utility_id, admin, types=0b1000000), admin, "InvalidDeviceTypeMask"
    )
    expect_revert(
        env.upsert_program(utility_id, admin, protocols=list(PROTOCOL_NAMES) * 3),
        admin,
        "TooManyProtocols",
        18,
    )
    expect_revert(env.upsert_program(utility_id, admin, external_id=""), admin, "EmptyString")


def test_only_the_vendor_changes_its_model(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    vendor, other_vendor, outsider = roles["vendor"], roles["other_vendor"], roles["outsider"]
    make, model = "Acme Energy", unique("PowerBox")

    def register(*rest: Any) -> Any:
        return registry.registerDeviceModel(make, model, *rest)

    expect_revert(
        env.model_call(register),
        outsider,
        "AccessControlUnauthorizedAccount",
        outsider,
        keccak(b"VENDOR_ROLE"),
    )
    receipt = env.ok(env.model_call(register, energy=27000), vendor)
    model_id = model_id_of(make, model)
    [registered] = env.events(receipt, "DeviceModelRegistered")
    assert (registered.modelId, registered.vendor, registered.make, registered.model) == (
        model_id,
        vendor,
        make,
        model,
    )
    [details] = env.events(receipt, "DeviceModelDetailsSet")
    assert details.energyWh == 27000
    assert model_id in registry.modelIds().call()
    assert registry.modelCount().call() == len(registry.modelIds().call())
    expect_revert(env.model_call(register), other_vendor, "DeviceModelExists", model_id)

    def update(*rest: Any) -> Any:
        return registry.updateDeviceModel(model_id, *rest)

    expect_revert(
        env.model_call(update, charge=1), other_vendor, "NotModelVendor", model_id, other_vendor
    )
    expect_revert(env.model_call(update), outsider, "AccessControlUnauthorizedAccount")
    receipt = env.ok(
        env.model_call(update, device_type=EV_CHARGER, charge=11000, protocols=["OCPP_2_0_1"]),
        vendor,
    )
    [details] = env.events(receipt, "DeviceModelDetailsSet")
    assert (details.deviceType, details.maxChargeW) == (EV_CHARGER, 11000)
    assert registry.getDeviceModel(model_id).call() == (
        vendor,
        make,
        model,
        EV_CHARGER,
        11000,
        5000,
        13500,
        240,
        [P["OCPP_2_0_1"]],
        "https://vendor.example/der",
        keccak(b"vendor-cert"),
        True,
    )
    unknown = model_id_of("nobody", "nothing")
    expect_revert(
        env.model_call(lambda *rest: registry.updateDeviceModel(unknown, *rest)),
        vendor,
        "UnknownDeviceModel",
        unknown,
    )


# ---------------------------------------------------------------------------- connections


def test_connect_charges_exactly_the_fee_from_payer_to_fee_recipient(
    env: Env, roles: dict[str, str]
) -> None:
    registry = env.registry.functions
    admin, customer = roles["utility_admin"], roles["customer"]
    utility_id, fee_recipient = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin)
    model_id, make, model = env.new_model(roles["vendor"])
    device_id = env.device(make, model)
    env.mint(customer, FEE + 3)
    env.ok(env.token.functions.approve(env.registry.address, FEE), customer)
    before = env.balance(customer)
    count_before = registry.connectionCount().call()

    connect = registry.connect(device_id, model_id, program_id, P["OPENADR_2_0B"])
    connection_id = connect.call({"from": customer})
    receipt = env.ok(connect, customer)

    assert env.balance(customer) == before - FEE
    assert env.balance(fee_recipient) == FEE
    assert env.balance(env.registry.address) == 0
    assert env.token.functions.allowance(customer, env.registry.address).call() == 0
    [event] = env.events(receipt, "Connected")
    assert dict(event) == {
        "connectionId": connection_id,
        "deviceId": device_id,
        "programId": program_id,
        "owner": customer,
        "payer": customer,
        "fee": FEE,
        "protocol": P["OPENADR_2_0B"],
    }
    [transfer] = env.events(receipt, "Transfer", env.token)
    assert (transfer["from"], transfer.to, transfer.value) == (customer, fee_recipient, FEE)
    block = env.w3.eth.get_block(receipt["blockNumber"])
    assert registry.getConnection(connection_id).call() == (
        device_id,
        model_id,
        program_id,
        P["OPENADR_2_0B"],
        customer,
        BATTERY,
        STATUS_ACTIVE,
        block["timestamp"],
        customer,
        0,
        FEE,
    )
    assert connection_id == keccak(
        encode(["bytes32", "bytes32", "uint256"], [device_id, program_id, count_before + 1])
    )
    assert registry.activeConnectionOf(device_id, program_id).call() == connection_id
    assert registry.getProgram(program_id).call()[10] == 1


def test_free_program_needs_no_approval(env: Env, roles: dict[str, str]) -> None:
    admin, outsider = roles["utility_admin"], roles["outsider"]
    utility_id, _ = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin, fee=0)
    model_id, make, model = env.new_model(roles["vendor"])
    receipt = env.ok(
        env.registry.functions.connect(
            env.device(make, model), model_id, program_id, P["OPENADR_2_0B"]
        ),
        outsider,
    )
    assert env.events(receipt, "Transfer", env.token) == []
    assert [e.fee for e in env.events(receipt, "Connected")] == [0]


def _customer_batch(
    env: Env, customer: Any, calls: list[tuple[str, bytes, int]]
) -> tuple[bytes, list[ForwardRequest]]:
    """Signed forward requests (target, data, gas) from `customer`, as executeAll calldata."""
    separator = domain_separator(chain_id=env.w3.eth.chain_id, forwarder=env.forwarder.address)
    nonce = env.forwarder.functions.nonces(customer.address).call()
    deadline = int(time.time()) + 3600
    requests = [
        sign_request(
            ForwardRequest(
                sender=customer.address,
                target=target,
                value=0,
                gas=gas,
                nonce=nonce + i,
                deadline=deadline,
                data=data,
            ),
            private_key=customer.key,
            separator=separator,
        )
        for i, (target, data, gas) in enumerate(calls)
    ]
    return forwarder_calldata(requests), requests


def _relay(env: Env, relayer: str, calldata: bytes) -> Any:
    tx_hash = env.w3.eth.send_transaction(
        {"from": relayer, "to": env.forwarder.address, "data": calldata, "gas": 1_500_000}
    )
    return env.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)


def _approve_data(env: Env, amount: int) -> bytes:
    return bytes.fromhex(
        env.token.encode_abi("approve", args=[env.registry.address, amount]).removeprefix("0x")
    )


def _call_data(env: Env, name: str, *args: Any) -> bytes:
    return bytes.fromhex(env.registry.encode_abi(name, args=list(args)).removeprefix("0x"))


def test_gasless_connect_through_the_forwarder(env: Env, roles: dict[str, str]) -> None:
    """A customer with no native token connects with one signed [approve, connect] batch."""
    registry = env.registry.functions
    admin, relayer = roles["utility_admin"], roles["relayer"]
    utility_id, fee_recipient = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin)
    model_id, make, model = env.new_model(roles["vendor"])
    device_id = env.device(make, model)
    customer = Account.create()
    env.mint(customer.address, FEE)
    assert env.w3.eth.get_balance(customer.address) == 0

    calldata, requests = _customer_batch(
        env,
        customer,
        [
            (env.token.address, _approve_data(env, FEE), 100_000),
            (
                env.registry.address,
                _call_data(env, "connect", device_id, model_id, program_id, P["OPENADR_2_0B"]),
                500_000,
            ),
        ],
    )
    receipt = _relay(env, relayer, calldata)
    assert receipt["status"] == 1
    executed = env.events(receipt, "ExecutedForwardRequest", env.forwarder)
    assert [(e.signer, e.success) for e in executed] == [(customer.address, True)] * 2

    assert env.w3.eth.get_balance(customer.address) == 0
    assert env.balance(customer.address) == 0
    assert env.balance(fee_recipient) == FEE
    [event] = env.events(receipt, "Connected")
    assert (event.owner, event.payer, event.fee) == (customer.address, customer.address, FEE)
    connection = registry.getConnection(event.connectionId).call()
    assert connection[4] == customer.address  # owner is the signer, not the forwarder
    assert env.forwarder.functions.nonces(customer.address).call() == requests[-1].nonce + 1

    # The same customer disconnects gaslessly too (authorization by _msgSender()).
    calldata, _ = _customer_batch(
        env,
        customer,
        [(env.registry.address, _call_data(env, "disconnect", event.connectionId), 200_000)],
    )
    receipt = _relay(env, relayer, calldata)
    assert [e.by for e in env.events(receipt, "Disconnected")] == [customer.address]


def test_a_failing_connect_reverts_the_whole_execute_all_batch_unlike_execute_batch(
    env: Env, roles: dict[str, str]
) -> None:
    """OpenZeppelin's executeBatch with refundReceiver = 0 only requires every request to be
    *valid*: a request whose call reverts is recorded with ExecutedForwardRequest(success=false)
    and the batch goes on, so the approval of an [approve, connect] batch would stay in place.
    The relayer therefore uses OVPPForwarder.executeAll, which reverts unless every call
    succeeds: nothing of a failed batch happens and no nonce is used. The registry's own error
    can be learned beforehand with an eth_call from the forwarder's address (calldata + signer).
    """
    registry = env.registry.functions
    admin, relayer = roles["utility_admin"], roles["relayer"]
    utility_id, fee_recipient = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin, active=False)
    model_id, make, model = env.new_model(roles["vendor"])
    device_id = env.device(make, model)
    customer = Account.create()
    env.mint(customer.address, FEE)
    connect_data = _call_data(env, "connect", device_id, model_id, program_id, P["OPENADR_2_0B"])
    count_before = registry.connectionCount().call()

    # Pre-flight: the registry's own error, as the forwarder would see it.
    with pytest.raises((ContractCustomError, ContractLogicError)) as info:
        env.w3.eth.call(
            {
                "from": env.forwarder.address,
                "to": env.registry.address,
                "data": connect_data + bytes.fromhex(customer.address[2:]),
            }
        )
    assert_error(revert_data(info.value), "ProgramInactive", program_id)

    calls = [
        (env.token.address, _approve_data(env, FEE), 100_000),
        (env.registry.address, connect_data, 500_000),
    ]
    calldata, requests = _customer_batch(env, customer, calls)  # executeAll
    nonce_before = env.forwarder.functions.nonces(customer.address).call()
    receipt = _relay(env, relayer, calldata)
    assert receipt["status"] == 0, "executeAll: all or nothing"
    assert env.forwarder.functions.nonces(customer.address).call() == nonce_before
    assert env.token.functions.allowance(customer.address, env.registry.address).call() == 0
    assert registry.connectionCount().call() == count_before

    # The same signed requests through OpenZeppelin's executeBatch: the approval goes through.
    batch = env.forwarder.encode_abi(
        "executeBatch",
        args=[[r.as_tuple() for r in requests], "0x0000000000000000000000000000000000000000"],
    )
    receipt = _relay(env, relayer, bytes.fromhex(batch[2:]))
    assert receipt["status"] == 1
    executed = env.events(receipt, "ExecutedForwardRequest", env.forwarder)
    assert [e.success for e in executed] == [True, False]
    assert env.events(receipt, "Connected") == []
    assert registry.connectionCount().call() == count_before
    assert env.balance(customer.address) == FEE and env.balance(fee_recipient) == 0
    assert env.token.functions.allowance(customer.address, env.registry.address).call() == FEE


def test_only_relayers_the_owner_authorized_can_submit_forward_requests(
    env: Env, roles: dict[str, str]
) -> None:
    """A signed request stays valid until its deadline, and after a failure the backend signs
    the wallet's next requests from the forwarder's nonce: a failed request published in a
    reverted transaction would become executable again. Nobody but an authorized relayer can
    submit it, so it never runs unless the backend sends it."""
    relayer, outsider = roles["relayer"], roles["outsider"]
    customer = Account.create()
    env.mint(customer.address, 3 * FEE)
    transfer = bytes.fromhex(
        env.token.encode_abi("transfer", args=[outsider, FEE]).removeprefix("0x")
    )
    calldata, [request] = _customer_batch(env, customer, [(env.token.address, transfer, 100_000)])
    forwarder = env.forwarder.functions
    nonce = forwarder.nonces(customer.address).call()

    for submit in (
        forwarder.execute(request.as_tuple()),
        forwarder.executeBatch([request.as_tuple()], outsider),
        forwarder.executeAll([request.as_tuple()]),
    ):
        expect_revert(submit, outsider, "OVPPForwarderUnauthorizedRelayer", outsider)
    receipt = _relay(env, outsider, calldata)  # mined, and reverted
    assert receipt["status"] == 0
    assert forwarder.nonces(customer.address).call() == nonce
    assert env.balance(customer.address) == 3 * FEE and env.balance(outsider) == 0

    # Only the owner says who relays.
    expect_revert(
        forwarder.setRelayer(outsider, True), outsider, "OwnableUnauthorizedAccount", outsider
    )
    assert forwarder.isRelayer(relayer).call() and not forwarder.isRelayer(outsider).call()
    assert forwarder.owner().call() == env.registrar

    assert _relay(env, relayer, calldata)["status"] == 1
    assert env.balance(customer.address) == 2 * FEE and env.balance(outsider) == FEE

    # A relayer the owner stops is refused like anybody else.
    receipt = env.ok(forwarder.setRelayer(relayer, False), env.registrar)
    try:
        assert [
            (e.account, e.allowed) for e in env.events(receipt, "RelayerSet", env.forwarder)
        ] == [(relayer, False)]
        calldata, _ = _customer_batch(env, customer, [(env.token.address, transfer, 100_000)])
        assert _relay(env, relayer, calldata)["status"] == 0
        assert env.balance(outsider) == FEE
    finally:
        env.ok(forwarder.setRelayer(relayer, True), env.registrar)


def test_connect_sponsored_only_by_the_programs_sponsor(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin, sponsor, customer = roles["utility_admin"], roles["sponsor"], roles["customer"]
    utility_id, fee_recipient = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin, sponsor=sponsor)
    unsponsored = env.new_program(utility_id, admin)
    model_id, make, model = env.new_model(roles["vendor"])
    device_id = env.device(make, model)
    protocol = P["OPENADR_2_0B"]
    env.mint(sponsor, 2 * FEE)
    env.ok(env.token.functions.approve(env.registry.address, 2 * FEE), sponsor)
    customer_before = env.balance(customer)

    for caller in (customer, admin, roles["outsider"]):
        expect_revert(
            registry.connectSponsored(customer, device_id, model_id, program_id, protocol),
            caller,
            "NotSponsor",
            program_id,
            caller,
        )
    expect_revert(
        registry.connectSponsored(customer, device_id, model_id, unsponsored, protocol),
        sponsor,
        "NotSponsor",
        unsponsored,
        sponsor,
    )
    expect_revert(
        registry.connectSponsored(ZERO, device_id, model_id, program_id, protocol),
        sponsor,
        "ZeroAddress",
    )

    receipt = env.ok(
        registry.connectSponsored(customer, device_id, model_id, program_id, protocol), sponsor
    )
    [event] = env.events(receipt, "Connected")
    assert (event.owner, event.payer, event.fee) == (customer, sponsor, FEE)
    assert env.balance(sponsor) == FEE
    assert env.balance(fee_recipient) == FEE
    assert env.balance(customer) == customer_before
    connection = registry.getConnection(event.connectionId).call()
    assert (connection[4], connection[8]) == (customer, sponsor)
    # The customer owns it: they may disconnect it; the sponsor may not.
    expect_revert(
        registry.disconnect(event.connectionId),
        sponsor,
        "NotOwnerOrUtilityAdmin",
        event.connectionId,
        sponsor,
    )
    env.ok(registry.disconnect(event.connectionId), customer)


def test_one_active_connection_per_device_and_program(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin, customer, outsider = roles["utility_admin"], roles["customer"], roles["outsider"]
    utility_id, _ = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin, fee=0)
    other_program = env.new_program(utility_id, admin, fee=0)
    model_id, make, model = env.new_model(roles["vendor"])
    device_id = env.device(make, model)
    protocol = P["OPENADR_2_0B"]

    def connect(program: bytes) -> Any:
        return registry.connect(device_id, model_id, program, protocol)

    first = env.events(env.ok(connect(program_id), customer), "Connected")[0].connectionId
    expect_revert(connect(program_id), customer, "AlreadyConnected", device_id, program_id, first)
    expect_revert(connect(program_id), outsider, "AlreadyConnected")  # nobody else either
    env.ok(connect(other_program), customer)  # another program is another slot

    expect_revert(registry.disconnect(first), outsider, "NotOwnerOrUtilityAdmin", first, outsider)
    receipt = env.ok(registry.disconnect(first), customer)
    [event] = env.events(receipt, "Disconnected")
    assert dict(event) == {
        "connectionId": first,
        "deviceId": device_id,
        "programId": program_id,
        "by": customer,
    }
    connection = registry.getConnection(first).call()
    block = env.w3.eth.get_block(receipt["blockNumber"])
    assert (connection[6], connection[9]) == (STATUS_DISCONNECTED, block["timestamp"])
    assert registry.activeConnectionOf(device_id, program_id).call() == ZERO32
    assert registry.getProgram(program_id).call()[10] == 0
    expect_revert(registry.disconnect(first), customer, "ConnectionNotActive", first)
    expect_revert(registry.disconnect(b"\x01" * 32), customer, "ConnectionNotActive")

    # The slot is free again; the new connection has a new id. The utility admin may end it.
    second = env.events(env.ok(connect(program_id), customer), "Connected")[0].connectionId
    assert second != first
    assert registry.activeConnectionOf(device_id, program_id).call() == second
    env.ok(registry.disconnect(second), admin)
    assert registry.getConnection(second).call()[6] == STATUS_DISCONNECTED
    assert registry.getConnection(first).call()[6] == STATUS_DISCONNECTED  # history kept


def test_eligibility_is_checked(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin, vendor, customer = roles["utility_admin"], roles["vendor"], roles["customer"]
    utility_id, _ = env.new_utility(
        admin, endpoints={"OPENADR_2_0B": "https://vtn/2b", "IEEE_2030_5": "https://csip"}
    )
    program_id = env.new_program(
        utility_id,
        admin,
        protocols=["OPENADR_2_0B", "IEEE_2030_5", "OCPP_2_0_1"],  # no OCPP endpoint set
        types=(1 << BATTERY) | (1 << SOLAR_INVERTER),
        min_charge=3000,
        min_discharge=4000,
        min_energy=10000,
        fee=0,
    )
    good, make, model = env.new_model(vendor, protocols=["OPENADR_2_0B", "OCPP_2_0_1", "MATTER"])
    device_id = env.device(make, model)
    o2b, ocpp, matter, csip = P["OPENADR_2_0B"], P["OCPP_2_0_1"], P["MATTER"], P["IEEE_2030_5"]

    def check(model_id: bytes, protocol: bytes, name: str, *args: Any, program: bytes = program_id):
        expect_revert(
            registry.connect(device_id, model_id, program, protocol), customer, name, *args
        )

    check(good, matter, "ProtocolNotInProgram", program_id, matter)
    check(good, csip, "ProtocolNotSupportedByModel", good, csip)
    check(good, ocpp, "NoControlEndpoint", utility_id, ocpp)
    thermostat, *_ = env.new_model(vendor, device_type=THERMOSTAT)
    check(thermostat, o2b, "DeviceTypeNotEligible", program_id, THERMOSTAT)
    weak, *_ = env.new_model(vendor, charge=2999)
    check(weak, o2b, "ChargeBelowMinimum", 2999, 3000)
    weak, *_ = env.new_model(vendor, discharge=3999)
    check(weak, o2b, "DischargeBelowMinimum", 3999, 4000)
    weak, *_ = env.new_model(vendor, energy=9999)
    check(weak, o2b, "EnergyBelowMinimum", 9999, 10000)
    unknown_model = model_id_of("nobody", "nothing")
    check(unknown_model, o2b, "UnknownDeviceModel", unknown_model)
    unknown_program = program_id_of(utility_id, "no-such-program")
    check(good, o2b, "UnknownProgram", unknown_program, program=unknown_program)

    # Exactly at the minimums is enough.
    edge, edge_make, edge_model = env.new_model(
        vendor, device_type=SOLAR_INVERTER, charge=3000, discharge=4000, energy=10000
    )
    env.ok(registry.connect(env.device(edge_make, edge_model), edge, program_id, o2b), customer)

    # A cleared endpoint stops new connections over that protocol.
    env.ok(registry.setControlEndpoint(utility_id, o2b, ""), admin)
    check(good, o2b, "NoControlEndpoint", utility_id, o2b)
    env.ok(registry.setControlEndpoint(utility_id, o2b, "https://vtn/2b"), admin)

    # Deactivated programs take no new connections; reactivated ones do.
    external_id = registry.getProgram(program_id).call()[1]
    deactivate = {
        "external_id": external_id,
        "protocols": ["OPENADR_2_0B", "IEEE_2030_5", "OCPP_2_0_1"],
        "types": (1 << BATTERY) | (1 << SOLAR_INVERTER),
        "min_charge": 3000,
        "min_discharge": 4000,
        "min_energy": 10000,
        "fee": 0,
    }
    env.ok(env.upsert_program(utility_id, admin, **deactivate, active=False), admin)
    check(good, o2b, "ProgramInactive", program_id)
    env.ok(env.upsert_program(utility_id, admin, **deactivate, active=True), admin)
    env.ok(registry.connect(device_id, good, program_id, o2b), customer)


def test_insufficient_allowance_or_balance_writes_nothing(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin = roles["utility_admin"]
    payer = roles["outsider"]
    utility_id, fee_recipient = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin)
    model_id, make, model = env.new_model(roles["vendor"])
    device_id = env.device(make, model)
    connect = registry.connect(device_id, model_id, program_id, P["OPENADR_2_0B"])
    env.ok(env.token.functions.approve(env.registry.address, 0), payer)
    env.mint(payer, FEE)

    def state() -> tuple[Any, ...]:
        return (
            registry.connectionCount().call(),
            registry.activeConnectionOf(device_id, program_id).call(),
            registry.getProgram(program_id).call()[10],
            registry.activeConnectionsByType(program_id, BATTERY).call(),
            env.balance(payer),
            env.balance(fee_recipient),
        )

    before = state()
    # Allowance one unit short: the token's own error comes back through SafeERC20.
    env.ok(env.token.functions.approve(env.registry.address, FEE - 1), payer)
    expect_revert(connect, payer, "ERC20InsufficientAllowance", env.registry.address, FEE - 1, FEE)
    receipt = env.send(connect, payer, gas=600_000)  # mined anyway, to check nothing stuck
    assert receipt["status"] == 0 and receipt["logs"] == []
    assert state() == before

    # Allowance fine, balance one unit short.
    env.ok(env.token.functions.approve(env.registry.address, 10 * FEE), payer)
    env.ok(env.token.functions.transfer(fee_recipient, env.balance(payer) - (FEE - 1)), payer)
    before = state()
    expect_revert(connect, payer, "ERC20InsufficientBalance", payer, FEE - 1, FEE)
    receipt = env.send(connect, payer, gas=600_000)
    assert receipt["status"] == 0 and receipt["logs"] == []
    assert state() == before

    env.mint(payer, 1)
    env.ok(connect, payer)
    assert env.balance(payer) == 0


def test_counts_per_program_and_device_type(env: Env, roles: dict[str, str]) -> None:
    registry = env.registry.functions
    admin, customer = roles["utility_admin"], roles["customer"]
    utility_id, _ = env.new_utility(admin)
    program_id = env.new_program(utility_id, admin, fee=0, types=ALL_TYPES)
    other_program = env.new_program(utility_id, admin, fee=0)
    battery, b_make, b_model = env.new_model(roles["vendor"], device_type=BATTERY)
    thermostat, t_make, t_model = env.new_model(roles["other_vendor"], device_type=THERMOSTAT)
    protocol = P["OPENADR_2_0B"]

    def connect(model_id: bytes, make: str, model: str, program: bytes = program_id) -> bytes:
        receipt = env.ok(
            registry.connect(env.device(make, model), model_id, program, protocol), customer
        )
        return env.events(receipt, "Connected")[0].connectionId

    batteries = [connect(battery, b_make, b_model) for _ in range(3)]
    for _ in range(2):
        connect(thermostat, t_make, t_model)
    connect(battery, b_make, b_model, other_program)

    def counts(program: bytes) -> tuple[int, ...]:
        by_type = tuple(registry.activeConnectionsByType(program, t).call() for t in range(6))
        return (registry.getProgram(program).call()[10], *by_type)

    assert counts(program_id) == (5, 3, 0, 0, 2, 0, 0)
    assert counts(other_program) == (1, 1, 0, 0, 0, 0, 0)

    env.ok(registry.disconnect(batteries[0]), customer)
    assert counts(program_id) == (4, 2, 0, 0, 2, 0, 0)

    # The type is the one at connect time: re-typing the model later cannot skew the counts.
    def retype(*rest: Any) -> Any:
        return registry.updateDeviceModel(battery, *rest)

    env.ok(env.model_call(retype, device_type=HEAT_PUMP), roles["vendor"])
    env.ok(registry.disconnect(batteries[1]), customer)
    assert counts(program_id) == (3, 1, 0, 0, 2, 0, 0)


def test_gas(env: Env, roles: dict[str, str], record_property: Any) -> None:
    """Gas of the main calls, recorded (``-s`` prints it) and bounded."""
    registry = env.registry.functions
    admin, vendor, customer, relayer = (
        roles["utility_admin"],
        roles["vendor"],
        roles["customer"],
        roles["relayer"],
    )
    gas: dict[str, int] = {f"deploy {name}": used for name, used in env.deploy_gas.items()}

    slug = unique("utility")
    receipt = env.ok(
        registry.registerUtility(
            utility_id_of(slug),
            admin,
            "Pacific Example Electric",
            "US",
            "US-CA",
            ["94102-94110", "94114", "94121-94124"],
            Account.create().address,
            keccak(b"ca"),
        ),
        env.registrar,
    )
    gas["registerUtility (3 postal entries)"] = receipt["gasUsed"]
    utility_id = utility_id_of(slug)
    receipt = env.ok(
        registry.setControlEndpoint(utility_id, P["OPENADR_2_0B"], "https://vtn.example/2b"),
        admin,
    )
    gas["setControlEndpoint (first)"] = receipt["gasUsed"]
    receipt = env.ok(env.upsert_program(utility_id, admin, protocols=["OPENADR_2_0B"]), admin)
    gas["upsertProgram (create, 1 protocol)"] = receipt["gasUsed"]
    program_id = env.events(receipt, "ProgramUpserted")[0].programId
    external_id = registry.getProgram(program_id).call()[1]
    receipt = env.ok(env.upsert_program(utility_id, admin, external_id=external_id), admin)
    gas["upsertProgram (update)"] = receipt["gasUsed"]

    make, model = "Acme Energy", unique("PowerBox")

    def register(*rest: Any) -> Any:
        return registry.registerDeviceModel(make, model, *rest)

    receipt = env.ok(env.model_call(register), vendor)
    gas["registerDeviceModel (2 protocols)"] = receipt["gasUsed"]
    model_id = model_id_of(make, model)

    # First connection of the program (its counters go 0 -> 1, the fee recipient's balance
    # too), then a second one: the usual case.
    env.mint(customer, 2 * FEE)
    env.ok(env.token.functions.approve(env.registry.address, 2 * FEE), customer)
    connection_ids = []
    for label in ("first in program", "second in program"):
        receipt = env.ok(
            registry.connect(env.device(make, model), model_id, program_id, P["OPENADR_2_0B"]),
            customer,
        )
        gas[f"connect direct, fee paid ({label})"] = receipt["gasUsed"]
        connection_ids.append(env.events(receipt, "Connected")[0].connectionId)
    receipt = env.ok(registry.disconnect(connection_ids[0]), customer)
    gas["disconnect"] = receipt["gasUsed"]

    wallet = Account.create()
    env.mint(wallet.address, FEE)
    calldata, _ = _customer_batch(
        env,
        wallet,
        [
            (env.token.address, _approve_data(env, FEE), 100_000),
            (
                env.registry.address,
                _call_data(
                    env, "connect", env.device(make, model), model_id, program_id, P["OPENADR_2_0B"]
                ),
                500_000,
            ),
        ],
    )
    receipt = _relay(env, relayer, calldata)
    assert receipt["status"] == 1 and len(env.events(receipt, "Connected")) == 1
    gas["connect via forwarder executeBatch [approve, connect] (third)"] = receipt["gasUsed"]

    # Not a registry call, for scale: a plain forwarded OVPP transfer.
    calldata, _ = _customer_batch(
        env, wallet, [(env.token.address, erc20_transfer_data(customer, 0), 100_000)]
    )
    receipt = _relay(env, relayer, calldata)
    gas["(scale) forwarded OVPP transfer of 0"] = receipt["gasUsed"]

    for name, used in gas.items():
        record_property(name, used)
        print(f"gas {name}: {used}")
    assert gas["connect direct, fee paid (first in program)"] < 400_000
    assert gas["connect via forwarder executeBatch [approve, connect] (third)"] < 500_000
