"""RewardsDistributor (contracts/src/RewardsDistributor.sol) on the session's anvil: a sponsor
publishes and funds an event's root, leaves built by the backend's own Merkle code verify with
the contract's views, each leaf pays once (batches included), an event never pays more than it
was funded with, and settling a leaf moves the device's reputation."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from eth_account import Account
from eth_hash.auto import keccak
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD

from chain.address_book import AddressBook
from chain.artifacts import artifact
from chain.deploy import Deployer
from programs.rewards.distributor import event_id_of
from programs.rewards.merkle import RewardLeaf, build_tree, leaf_hash, verify
from relayer.forwarder import ForwardRequest, domain_separator, forwarder_calldata, sign_request

OVPP = 10**18
_refs = itertools.count(1)


class Chain:
    def __init__(self, deployer: Deployer, book: AddressBook) -> None:
        self.deployer = deployer
        self.w3 = deployer.web3
        assert book.rewards_distributor is not None
        self.distributor = self.w3.eth.contract(
            address=book.rewards_distributor, abi=artifact("RewardsDistributor").abi
        )
        self.token = self.w3.eth.contract(address=book.ovpp_token, abi=artifact("OVPPToken").abi)
        self.forwarder = self.w3.eth.contract(
            address=book.forwarder, abi=artifact("OVPPForwarder").abi
        )

    def send(self, fn: Any, sender: str, *, gas: int | None = None) -> Any:
        tx: dict[str, Any] = {"from": sender}
        if gas is not None:
            tx["gas"] = gas
        return self.w3.eth.wait_for_transaction_receipt(fn.transact(tx), timeout=30)

    def ok(self, fn: Any, sender: str) -> Any:
        receipt = self.send(fn, sender)
        assert receipt["status"] == 1
        return receipt

    def balance(self, owner: str) -> int:
        return int(self.token.functions.balanceOf(owner).call())

    def sponsor(self, ovpp: int) -> str:
        """A fresh unlocked sponsor with ``ovpp`` and gas."""
        account = Account.create()
        self.w3.provider.make_request("anvil_impersonateAccount", [account.address])  # type: ignore[arg-type]
        self.w3.provider.make_request("anvil_setBalance", [account.address, hex(10**20)])  # type: ignore[arg-type]
        if ovpp:
            self.deployer.mint(token=self.token.address, to=account.address, amount=ovpp)
        return account.address


@pytest.fixture(scope="module")
def chain(deployer: Deployer, contracts: AddressBook) -> Chain:
    return Chain(deployer, contracts)


def _leaves(event_id: bytes, amounts: list[int], wh: list[int] | None = None) -> list[RewardLeaf]:
    wh = wh or [a // 10**15 for a in amounts]
    return [
        RewardLeaf(
            index=i,
            device_id=keccak(f"device-{next(_refs)}".encode()),
            recipient=Account.create().address,
            amount=amount,
            contribution_wh=wh[i],
            event_id=event_id,
            performance_bps=10_000 if amount else 0,
        )
        for i, amount in enumerate(amounts)
    ]


def _published(chain: Chain, amounts: list[int], *, total: int | None = None) -> tuple:
    """A sponsor that approved and published an event of these leaves: (event id, leaves, tree)."""
    total = sum(amounts) if total is None else total
    sponsor = chain.sponsor(total)
    ref = keccak(f"event-{next(_refs)}".encode())
    event_id = event_id_of(sponsor, ref)
    leaves = _leaves(event_id, amounts)
    tree = build_tree([leaf_hash(leaf) for leaf in leaves])
    chain.ok(chain.token.functions.approve(chain.distributor.address, total), sponsor)
    chain.ok(chain.distributor.functions.publish(ref, tree.root, total, len(leaves)), sponsor)
    return event_id, leaves, tree, sponsor, ref


def _claim_many(chain: Chain, event_id: bytes, leaves: list[RewardLeaf], tree: Any) -> Any:
    proofs = [tree.proof(leaf_hash(leaf)) for leaf in leaves]
    return chain.distributor.functions.claimMany(
        event_id, [leaf.as_tuple() for leaf in leaves], proofs
    )


def _error(exc: Exception) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    selector = bytes.fromhex(str(data).removeprefix("0x"))[:4]
    for item in artifact("RewardsDistributor").abi + artifact("OVPPToken").abi:
        if item["type"] == "error":
            signature = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            if keccak(signature.encode())[:4] == selector:
                return item["name"]
    return selector.hex()


def _reverts(fn: Any, sender: str) -> str:
    with pytest.raises((ContractCustomError, ContractLogicError)) as info:
        fn.call({"from": sender})
    return _error(info.value)


def test_the_backends_proofs_verify_with_the_contracts_views(chain: Chain) -> None:
    event_id, leaves, tree, _sponsor, _ref = _published(chain, [3 * OVPP, 0, OVPP, 2 * OVPP, 5])
    views = chain.distributor.functions
    for leaf in leaves:
        proof = tree.proof(leaf_hash(leaf))
        assert verify(proof, tree.root, leaf_hash(leaf))
        assert views.verify(tree.root, event_id, leaf.as_tuple(), proof).call()
        assert views.verifyClaim(event_id, leaf.as_tuple(), proof).call()
        assert views.leafHash(event_id, leaf.as_tuple()).call() == leaf_hash(leaf)
    # Any changed field fails: the amount, the recipient, the event.
    leaf, proof = leaves[0], tree.proof(leaf_hash(leaves[0]))
    more = RewardLeaf(**{**leaf.__dict__, "amount": leaf.amount + 1})
    assert not views.verifyClaim(event_id, more.as_tuple(), proof).call()
    other = RewardLeaf(**{**leaf.__dict__, "recipient": Account.create().address})
    assert not views.verify(tree.root, event_id, other.as_tuple(), proof).call()
    assert not views.verifyClaim(keccak(b"another"), leaf.as_tuple(), proof).call()


def test_publish_funds_the_event_and_claim_many_pays_each_recipient_once(chain: Chain) -> None:
    amounts = [3 * OVPP, 0, OVPP, 2 * OVPP]
    event_id, leaves, tree, sponsor, _ref = _published(chain, amounts)
    assert chain.balance(sponsor) == 0
    assert chain.balance(chain.distributor.address) >= sum(amounts)
    receipt = chain.ok(_claim_many(chain, event_id, leaves, tree), chain.deployer.account.address)
    for leaf in leaves:
        assert chain.balance(leaf.recipient) == leaf.amount
        assert chain.distributor.functions.isClaimed(event_id, leaf.index).call()
    claimed = chain.distributor.events.Claimed().process_receipt(receipt, errors=DISCARD)
    assert len(claimed) == len(leaves)

    # The same batch again (a resumed settlement): mined, pays nobody.
    again = _claim_many(chain, event_id, leaves, tree)
    assert again.call() == 0
    chain.ok(again, chain.deployer.account.address)
    assert [chain.balance(leaf.recipient) for leaf in leaves] == amounts
    one = leaves[0]
    single = chain.distributor.functions.claim(event_id, one.as_tuple(), tree.proof(leaf_hash(one)))
    assert _reverts(single, sponsor) == "AlreadyClaimed"
    state = chain.distributor.functions.distribution(event_id).call()
    assert state[4:] == (sum(amounts), sum(amounts))  # total, paid


def test_an_invalid_proof_reverts_the_whole_batch(chain: Chain) -> None:
    event_id, leaves, tree, _sponsor, _ref = _published(chain, [OVPP, OVPP])
    forged = RewardLeaf(**{**leaves[1].__dict__, "amount": 2 * OVPP})
    proofs = [tree.proof(leaf_hash(leaf)) for leaf in leaves]
    batch = chain.distributor.functions.claimMany(
        event_id, [leaves[0].as_tuple(), forged.as_tuple()], proofs
    )
    assert _reverts(batch, chain.deployer.account.address) == "InvalidProof"
    assert not chain.distributor.functions.isClaimed(event_id, 0).call()


def test_an_event_never_pays_more_than_its_funding(chain: Chain) -> None:
    """A root whose leaves add up to more than the total funded cannot draw on other events."""
    event_id, leaves, tree, _sponsor, _ref = _published(chain, [OVPP, OVPP], total=OVPP)
    chain.ok(_claim_many(chain, event_id, leaves[:1], tree), chain.deployer.account.address)
    assert _reverts(
        _claim_many(chain, event_id, leaves[1:], tree), chain.deployer.account.address
    ) == ("OverFunded")


def test_publish_without_the_ovpp_publishes_nothing(chain: Chain) -> None:
    sponsor = chain.sponsor(OVPP)  # has 1, the event needs 2
    ref = keccak(b"unfunded-" + str(time.time()).encode())
    chain.ok(chain.token.functions.approve(chain.distributor.address, 2 * OVPP), sponsor)
    publish = chain.distributor.functions.publish(ref, keccak(b"root"), 2 * OVPP, 2)
    assert _reverts(publish, sponsor) == "ERC20InsufficientBalance"
    assert chain.send(publish, sponsor, gas=300_000)["status"] == 0
    event_id = event_id_of(sponsor, ref)
    assert chain.distributor.functions.distribution(event_id).call()[3] == b"\x00" * 32
    assert chain.balance(sponsor) == OVPP


def test_event_ids_are_the_sponsors_own(chain: Chain) -> None:
    """Publishing the same reference twice fails; another sponsor's same reference is another
    event (nobody can squat a sponsor's event id)."""
    _event_id, _leaves, tree, sponsor, ref = _published(chain, [OVPP])
    again = chain.distributor.functions.publish(ref, tree.root, 0, 1)
    assert _reverts(again, sponsor) == "AlreadyPublished"
    other = chain.sponsor(0)
    chain.ok(chain.distributor.functions.publish(ref, tree.root, 0, 1), other)
    assert event_id_of(other, ref) != event_id_of(sponsor, ref)
    assert chain.distributor.functions.eventIdOf(other, ref).call() == event_id_of(other, ref)


def test_settling_moves_each_devices_reputation(chain: Chain) -> None:
    """Delivered: dispatched, delivered, Wh and performance rise. Opted out (a zero leaf):
    dispatched rises, nothing else, so the average performance falls."""
    sponsor = chain.sponsor(10 * OVPP)
    chain.ok(chain.token.functions.approve(chain.distributor.address, 10 * OVPP), sponsor)
    device = keccak(f"device-rep-{next(_refs)}".encode())
    recipient = Account.create().address
    figures = [(2 * OVPP, 1_500, 8_000), (0, 0, 0)]
    for amount, wh, bps in figures:
        ref = keccak(f"rep-{next(_refs)}".encode())
        event_id = event_id_of(sponsor, ref)
        leaf = RewardLeaf(0, device, recipient, amount, wh, event_id, bps)
        filler = RewardLeaf(1, keccak(b"filler"), recipient, 0, 0, event_id, 0)
        tree = build_tree([leaf_hash(leaf), leaf_hash(filler)])
        chain.ok(chain.distributor.functions.publish(ref, tree.root, amount, 2), sponsor)
        chain.ok(_claim_many(chain, event_id, [leaf], tree), sponsor)
        if amount:
            assert tuple(chain.distributor.functions.reputationOf(device).call()[:4]) == (
                1,
                1,
                1_500,
                8_000,
            )
    dispatched, delivered, wh, bps, _last = chain.distributor.functions.reputationOf(device).call()
    assert (dispatched, delivered, wh, bps) == (2, 1, 1_500, 4_000)


def test_a_sponsor_publishes_gaslessly_with_one_atomic_batch(chain: Chain) -> None:
    """[approve, publish] signed by a sponsor without native gas, relayed through the
    forwarder's executeAll by an authorized relayer: the sponsor's OVPP moves, no ETH spent."""
    sponsor = Account.create()
    chain.deployer.mint(token=chain.token.address, to=sponsor.address, amount=4 * OVPP)
    ref = keccak(f"gasless-{next(_refs)}".encode())
    event_id = event_id_of(sponsor.address, ref)
    leaves = _leaves(event_id, [4 * OVPP])
    tree = build_tree([leaf_hash(leaf) for leaf in leaves])
    separator = domain_separator(chain_id=chain.w3.eth.chain_id, forwarder=chain.forwarder.address)
    nonce = chain.forwarder.functions.nonces(sponsor.address).call()
    calls = [
        (
            chain.token.address,
            chain.token.encode_abi("approve", args=[chain.distributor.address, 4 * OVPP]),
        ),
        (
            chain.distributor.address,
            chain.distributor.encode_abi("publish", args=[ref, tree.root, 4 * OVPP, 1]),
        ),
    ]
    requests = [
        sign_request(
            ForwardRequest(
                sender=sponsor.address,
                target=target,
                value=0,
                gas=200_000,
                nonce=nonce + i,
                deadline=int(time.time()) + 600,
                data=bytes.fromhex(data[2:]),
            ),
            private_key=sponsor.key,
            separator=separator,
        )
        for i, (target, data) in enumerate(calls)
    ]
    relayer = chain.deployer.account.address  # authorized at deployment
    tx = chain.w3.eth.send_transaction(
        {
            "from": relayer,
            "to": chain.forwarder.address,
            "data": forwarder_calldata(requests),
            "gas": 1_000_000,
        }
    )
    assert chain.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1
    assert chain.balance(sponsor.address) == 0
    assert chain.w3.eth.get_balance(sponsor.address) == 0
    assert chain.distributor.functions.distribution(event_id).call()[0] == sponsor.address
