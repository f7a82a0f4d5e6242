"""Settling an event on anvil through the relayer: the recipient's balanceOf rises by exactly
the computed reward, the proof verifies with the contract's view, reputations move, an
opted-out device gets nothing and loses standing; settling again pays nothing; a sponsor short
of OVPP leaves the settlement UNFUNDED with nothing published until it is funded."""

from __future__ import annotations

import pytest
from sqlmodel import select

from programs.admin import utility_wallet
from programs.rewards import proofs
from programs.rewards.distributor import distributor_of
from programs.rewards.models import SettlementStatus
from programs.rewards.settlement import advance, settle_event
from relayer.models import RelayTransaction
from tests.support.rewards import (
    OVPP,
    DeviceSpec,
    another_event,
    ended_event,
    fresh_program,
    records,
    settled,
)

pytestmark = pytest.mark.usefixtures("relayer")

DELIVERS = DeviceSpec(response="OPT_IN", event_kw=-2.5)  # 3 kW below its 0.5 kW baseline
OPTS_OUT = DeviceSpec(response="OPT_OUT", event_kw=-2.5)
SILENT = DeviceSpec(response="OPT_IN", event_kw=None)


@pytest.fixture
async def event_setup(client, demo_issuer, deployer, contracts, services, registry_demo):  # type: ignore[no-untyped-def]
    async def make(devices: list[DeviceSpec], *, reward: int = 3 * OVPP, bonus: int = 25 * OVPP):
        program = await fresh_program(
            services, registry_demo, per_event_reward=reward, enrollment_bonus=bonus
        )
        return await ended_event(
            services, client=client, issuer=demo_issuer, deployer=deployer, contracts=contracts,
            tenant=registry_demo, program=program, devices=devices,
        )  # fmt: skip

    return make


async def test_settlement_pays_exactly_the_computed_reward_once(
    event_setup, services, chain
) -> None:  # type: ignore[no-untyped-def]
    event = await event_setup([DELIVERS, OPTS_OUT, SILENT])
    delivers, opts_out, silent = event.participants
    before = {p.address: chain.ovpp_of(p.address) for p in event.participants}

    first = await settle_event(services, tenant_id=event.tenant_id, event_id=event.event_id)
    settlement = await settled(services, first.id)
    assert settlement.status == SettlementStatus.SETTLED, settlement.error
    rows = await records(services, settlement.id)

    # 3 kW against 3.5 kW asked: 8,571 bps of 3 OVPP, plus the 25 OVPP bonus, once.
    delivered = rows[delivers.enrollment_id]
    assert (delivered.performance_bps, delivered.delivered_wh) == (8_571, 100)
    assert delivered.amount == 3 * OVPP * 8_571 // 10_000 + 25 * OVPP
    assert chain.ovpp_of(delivers.address) - before[delivers.address] == delivered.amount
    for nobody in (opts_out, silent):
        assert rows[nobody.enrollment_id].amount == 0
        assert chain.ovpp_of(nobody.address) == before[nobody.address]
    assert {r.claim_status for r in rows.values()} == {"CONFIRMED"}

    # The proof verifies against the root with the contract's own view.
    distributor = distributor_of(services.chain)
    tree = await proofs.tree_of(services, settlement)
    leaf = tree.leaves[delivered.leaf_index]
    root = bytes.fromhex(settlement.root[2:])
    assert await distributor.verify(root=root, leaf=leaf, proof=tree.proof_of(leaf.index))

    # Reputation: the delivering battery gained, the opted-out and silent ones lost standing.
    good = await distributor.reputation(bytes.fromhex(delivers.device_id[2:]))
    assert (good.events_dispatched, good.events_delivered, good.delivered_wh) == (1, 1, 100)
    assert good.performance_bps == 8_571
    for nobody in (opts_out, silent):
        bad = await distributor.reputation(bytes.fromhex(nobody.device_id[2:]))
        assert (bad.events_dispatched, bad.events_delivered, bad.performance_bps) == (1, 0, 0)

    # Settling again: the same settlement, no new job, nothing paid.
    jobs = await _jobs_of_utility(services, event.tenant_id)
    again = await settle_event(services, tenant_id=event.tenant_id, event_id=event.event_id)
    assert again.id == settlement.id and again.status == SettlementStatus.SETTLED
    assert not await advance(services, settlement.id)
    assert await _jobs_of_utility(services, event.tenant_id) == jobs
    assert chain.ovpp_of(delivers.address) - before[delivers.address] == delivered.amount


async def test_the_bonus_is_paid_once_per_enrollment(event_setup, services, chain) -> None:  # type: ignore[no-untyped-def]
    event = await event_setup([DELIVERS])
    (participant,) = event.participants
    for number, current in enumerate([event, await another_event(services, event)]):
        asked = await settle_event(services, tenant_id=current.tenant_id, event_id=current.event_id)
        settlement = await settled(services, asked.id)
        (record,) = (await records(services, settlement.id)).values()
        assert record.enrollment_bonus == (25 * OVPP if number == 0 else 0)
        assert record.amount == 3 * OVPP * 8_571 // 10_000 + record.enrollment_bonus
    assert chain.ovpp_of(participant.address) == 2 * (3 * OVPP * 8_571 // 10_000) + 25 * OVPP
    reputation = await distributor_of(services.chain).reputation(
        bytes.fromhex(participant.device_id[2:])
    )
    assert (reputation.events_dispatched, reputation.events_delivered) == (2, 2)


async def test_a_sponsor_without_the_ovpp_leaves_it_unfunded_until_funded(  # type: ignore[no-untyped-def]
    event_setup, services, chain, deployer, registry_demo
) -> None:
    wallet = await utility_wallet(services, registry_demo)
    huge = chain.ovpp_of(wallet.address) + 1_000 * OVPP
    event = await event_setup([DELIVERS], reward=huge, bonus=0)
    settlement = await settle_event(services, tenant_id=event.tenant_id, event_id=event.event_id)
    assert settlement.status == SettlementStatus.UNFUNDED
    assert "OVPP" in (settlement.error or "")
    await advance(services, settlement.id)  # still short: nothing moves, nothing is sent
    distributor = distributor_of(services.chain)
    assert await distributor.distribution(bytes.fromhex(settlement.chain_event_id[2:])) is None
    (participant,) = event.participants
    assert chain.ovpp_of(participant.address) == 0

    assert services.chain.addresses is not None
    deployer.mint(token=services.chain.addresses.ovpp_token, to=wallet.address, amount=huge)
    done = await settled(services, settlement.id)
    assert done.status == SettlementStatus.SETTLED
    (record,) = (await records(services, settlement.id)).values()
    assert chain.ovpp_of(participant.address) == record.amount > 0


async def _jobs_of_utility(services, tenant_id: str) -> int:  # type: ignore[no-untyped-def]
    async with services.db.session() as session:
        rows = await session.execute(
            select(RelayTransaction.id).where(RelayTransaction.kind == "REWARD_SETTLEMENT")
        )
        return len(rows.all())
