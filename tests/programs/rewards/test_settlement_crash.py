"""A SIGKILL of the process running a settlement, at any step, loses nothing and pays nobody
twice: ``ovpp-wallet rewards settle`` (one claim per transaction, so there are several) is
killed while the root is being published or once some claims have landed; the settlement is
resumed from the database and every recipient holds exactly its reward."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlmodel import select

from programs.rewards.distributor import distributor_of
from programs.rewards.models import ClaimBatch, RewardSettlement, SettlementStatus
from tests.support.relayer_process import RelayerProcesses, environment_without_ovpp
from tests.support.rewards import OVPP, DeviceSpec, ended_event, fresh_program, records, settled

pytestmark = pytest.mark.usefixtures("relayer")

DELIVERS = DeviceSpec(response="OPT_IN", event_kw=-2.5)


async def _reached(services, event_id: str, point: str) -> bool:  # type: ignore[no-untyped-def]
    async with services.db.session() as session:
        settlement = (
            await session.execute(
                select(RewardSettlement).where(RewardSettlement.event_id == event_id)
            )
        ).scalar_one_or_none()
        if settlement is None:
            return False
        if point == "publishing":
            return settlement.status == SettlementStatus.PUBLISHING
        batches = (
            (
                await session.execute(
                    select(ClaimBatch).where(ClaimBatch.settlement_id == settlement.id)
                )
            )
            .scalars()
            .all()
        )
        # Claims under way: batches queued and not all confirmed (the relayer may confirm a
        # round of them at once, so "one confirmed, one pending" is not always there to see).
        return settlement.status == SettlementStatus.CLAIMING and any(
            b.status == "PENDING" for b in batches
        )


@pytest.mark.parametrize("point", ["publishing", "claiming"])
async def test_sigkill_during_settlement_pays_each_recipient_once(  # type: ignore[no-untyped-def]
    point, client, demo_issuer, deployer, contracts, services, settings, kek, anvil, registry_demo,
    chain, tmp_path,
) -> None:  # fmt: skip
    program = await fresh_program(services, registry_demo, per_event_reward=2 * OVPP)
    event = await ended_event(
        services, client=client, issuer=demo_issuer, deployer=deployer, contracts=contracts,
        tenant=registry_demo, program=program, devices=[DELIVERS] * 5,
    )  # fmt: skip
    env = environment_without_ovpp(
        PYTHONUNBUFFERED="1",
        OVPP_ENVIRONMENT="development",
        OVPP_DATA_DIR=str(settings.data_dir),
        OVPP_DATABASE_URL=settings.resolved_database_url,
        OVPP_RPC_URL=anvil.rpc_url,
        OVPP_ADDRESS_BOOK=str(settings.address_book),
        OVPP_KEK=kek,
        OVPP_REWARDS_CLAIMS_PER_TRANSACTION="1",
        OVPP_LOG_LEVEL="WARNING",
    )
    with RelayerProcesses(env=env, logs_dir=tmp_path, command="rewards") as processes:
        worker = processes.start(f"settle-{point}", "settle", event.event_id)
        deadline = time.monotonic() + 90
        while not await _reached(services, event.event_id, point):
            assert worker.running or await _reached(services, event.event_id, point), (
                processes.logs()
            )
            assert time.monotonic() < deadline, processes.logs()
            await asyncio.sleep(0.05)
        worker.kill()

    async with services.db.session() as session:
        settlement = (
            await session.execute(
                select(RewardSettlement).where(RewardSettlement.event_id == event.event_id)
            )
        ).scalar_one()
    done = await settled(services, settlement.id)
    assert done.status == SettlementStatus.SETTLED, done.error
    rows = await records(services, done.id)
    assert {r.claim_status for r in rows.values()} == {"CONFIRMED"}
    for participant in event.participants:
        assert chain.ovpp_of(participant.address) == rows[participant.enrollment_id].amount > 0
    published = await distributor_of(services.chain).distribution(
        bytes.fromhex(done.chain_event_id[2:])
    )
    assert published is not None and published.paid == published.total == done.total_reward
