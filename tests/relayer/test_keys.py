"""Which relayer keys are enabled is the relayer's to say: an API process that does not run the
relayer, whatever its own ``OVPP_RELAYER_KEYS``, never enables or disables one (else each API
start would move wallets to other keys while their transactions are in flight)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete
from sqlmodel import select

from api.app import create_app
from relayer.keys import ensure_relayer_keys, relayer_key_for
from relayer.models import RelayerKey
from tests.support.own_stack import RELAYER_KEYS, OwnStack


async def enabled_slots(stack: OwnStack) -> list[int]:
    async with stack.services.db.session() as session:
        rows = await session.execute(
            select(RelayerKey.slot).where(RelayerKey.enabled.is_(True)).order_by(RelayerKey.slot)
        )
        return list(rows.scalars())


async def start_api(stack: OwnStack, *, relayer_keys: int) -> None:
    """An API process's start and stop (its lifespan), without the relayer in it."""
    settings = stack.settings.model_copy(update={"relayer_keys": relayer_keys})
    app = create_app(settings, services=stack.services, run_relayer=False)
    async with app.router.lifespan_context(app):
        pass


@pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)
async def test_an_api_process_with_fewer_keys_leaves_the_relayers_keys_enabled(
    own_stack: OwnStack,
) -> None:
    assert RELAYER_KEYS > 1
    assert await enabled_slots(own_stack) == list(range(RELAYER_KEYS))  # the relayer's keys

    await start_api(own_stack, relayer_keys=1)  # the API's default

    assert await enabled_slots(own_stack) == list(range(RELAYER_KEYS))


@pytest.mark.parametrize("own_stack", ["sqlite"], indirect=True)
async def test_an_api_process_with_more_keys_adds_none(own_stack: OwnStack) -> None:
    await start_api(own_stack, relayer_keys=RELAYER_KEYS + 2)

    async with own_stack.services.db.session() as session:
        slots = list((await session.execute(select(RelayerKey.slot))).scalars())
    assert sorted(slots) == list(range(RELAYER_KEYS))
    assert await enabled_slots(own_stack) == list(range(RELAYER_KEYS))


@pytest.mark.parametrize("own_stack", ["sqlite"], indirect=True)
async def test_an_api_process_on_a_fresh_database_creates_keys_the_relayer_then_governs(
    own_stack: OwnStack,
) -> None:
    """Before the relayer's first start a transfer still finds a key; the relayer's own start
    then decides which keys are enabled, with its own count."""
    async with own_stack.services.db.session() as session:
        await session.execute(delete(RelayerKey))  # as before anything ever started

    await start_api(own_stack, relayer_keys=3)

    assert await enabled_slots(own_stack) == [0, 1, 2]
    async with own_stack.services.db.session() as session:
        assert await relayer_key_for(session, "a-wallet")
    await ensure_relayer_keys(own_stack.services, count=1)  # the relayer starts with 1 key
    assert await enabled_slots(own_stack) == [0]
