"""Rewards through GraphQL: the administrator settles an event (again: the same settlement),
reads its settlements, results and CSV; the customer sees the reward with its figures and a
proof that verifies with the contract's view, ``totalEarned`` and the device's reputation."""

from __future__ import annotations

import csv
import io

import pytest
from sqlmodel import select

from programs.models import Device
from programs.rewards.distributor import distributor_of
from programs.rewards.merkle import RewardLeaf, leaf_hash, verify
from tests.support.activity import indexed
from tests.support.graphql import gql
from tests.support.program_server import demo_admin
from tests.support.rewards import OVPP, DeviceSpec, ended_event, fresh_program, settled

pytestmark = pytest.mark.usefixtures("relayer")

SETTLE = """
mutation($id: ID!) { settleEvent(eventId: $id) {
  __typename ... on Settlement { id status totalReward recipients leaves root tx event { id } }
  ... on InvalidInput { message field } } }
"""
ADMIN = """
query($program: ID!, $event: ID!) { utilityAdmin {
  settlements(programId: $program) { id event { id } status totalReward recipients root tx }
  eventResults(eventId: $event) { askedKw deliveredKw deliveredWh owed paid
    contributions { response deliveredWh performance amount } }
  contributionsCsv(eventId: $event) } }
"""
ACTIVITY = """
query { viewer { wallet { activity(first: 10) { edges { node {
  kind amount counterpartyLabel } } } } } }
"""
VIEWER = """
query { viewer { totalEarned
  rewards(first: 10) { totalEarned pageInfo { hasNextPage }
    edges { node { id amount status event { id start end }
      contribution { baselineKw deliveredWh performance quality }
      proof { root leaf siblings eventId index contract } settlementTx claimTx } } }
  devices { id reputation { eventsDispatched eventsDelivered deliveredWh performanceBps } } } }
"""


async def test_settle_and_read_rewards_through_the_api(  # type: ignore[no-untyped-def]
    client, demo_issuer, deployer, contracts, services, registry_demo, chain_indexer
) -> None:
    program = await fresh_program(services, registry_demo, per_event_reward=3 * OVPP)
    event = await ended_event(
        services, client=client, issuer=demo_issuer, deployer=deployer, contracts=contracts,
        tenant=registry_demo, program=program,
        devices=[DeviceSpec("OPT_IN", -2.5), DeviceSpec("OPT_OUT", -2.5)],
    )  # fmt: skip
    admin = demo_admin(demo_issuer)
    customer = await gql(client, SETTLE, {"id": event.event_id}, token=event.participants[0].token)
    assert customer.get("errors") or customer["data"]["settleEvent"]["__typename"] != "Settlement"

    first = (await gql(client, SETTLE, {"id": event.event_id}, token=admin))["data"]["settleEvent"]
    assert first["__typename"] == "Settlement" and first["event"]["id"] == event.event_id
    assert (first["recipients"], first["leaves"]) == (1, 2)
    await settled(services, first["id"])
    again = (await gql(client, SETTLE, {"id": event.event_id}, token=admin))["data"]["settleEvent"]
    assert again["id"] == first["id"] and again["status"] == "SETTLED" and again["tx"]

    body = await gql(client, ADMIN, {"program": program.id, "event": event.event_id}, token=admin)
    view = body["data"]["utilityAdmin"]
    assert [s["id"] for s in view["settlements"]] == [first["id"]]
    results = view["eventResults"]
    assert results["askedKw"] == 7.0 and results["deliveredWh"] == 100
    assert results["paid"] == results["owed"] == first["totalReward"]
    rows = list(csv.DictReader(io.StringIO(view["contributionsCsv"])))
    assert sorted(r["response"] for r in rows) == ["OPT_IN", "OPT_OUT"]
    assert sum(int(r["amount"]) for r in rows) == 3 * OVPP * 8_571 // 10_000

    delivering = event.participants[0]
    mine = (await gql(client, VIEWER, token=delivering.token))["data"]["viewer"]
    (edge,) = mine["rewards"]["edges"]
    reward = edge["node"]
    assert reward["status"] == "CONFIRMED" and reward["claimTx"] and reward["settlementTx"]
    assert reward["amount"] == mine["totalEarned"] == mine["rewards"]["totalEarned"]
    assert reward["contribution"]["performance"] == 0.8571
    assert reward["event"]["id"] == event.event_id

    # The proof, from the API's strings alone, verifies here and with the contract's view.
    proof = reward["proof"]
    siblings = [bytes.fromhex(x[2:]) for x in proof["siblings"]]
    root, leaf = bytes.fromhex(proof["root"][2:]), bytes.fromhex(proof["leaf"][2:])
    assert verify(siblings, root, leaf)
    async with services.db.session() as session:
        statement = select(Device).where(Device.device_id == delivering.device_id)
        device = (await session.execute(statement)).scalar_one()
    claimed = RewardLeaf(
        index=proof["index"], device_id=bytes.fromhex(device.device_id[2:]),
        recipient=delivering.address, amount=3 * OVPP * 8_571 // 10_000,
        contribution_wh=100, event_id=bytes.fromhex(proof["eventId"][2:]), performance_bps=8_571,
    )  # fmt: skip
    assert leaf_hash(claimed) == leaf
    assert await distributor_of(services.chain).verify(root=root, leaf=claimed, proof=siblings)

    (device_view,) = mine["devices"]
    assert device_view["reputation"] == {
        "eventsDispatched": 1, "eventsDelivered": 1, "deliveredWh": 100, "performanceBps": 8_571,
    }  # fmt: skip
    opted_out = (await gql(client, VIEWER, token=event.participants[1].token))["data"]["viewer"]
    assert opted_out["totalEarned"] == "0"
    assert opted_out["devices"][0]["reputation"]["eventsDelivered"] == 0

    # The claim reaches the customer's activity feed as a REWARD from the rewards distributor.
    await indexed(services)
    feed = await gql(client, ACTIVITY, token=delivering.token)
    kinds = [e["node"] for e in feed["data"]["viewer"]["wallet"]["activity"]["edges"]]
    (item,) = [i for i in kinds if i["kind"] == "REWARD"]
    assert item["amount"] == reward["amount"] and item["counterpartyLabel"] == "Program rewards"
