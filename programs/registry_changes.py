"""An administrator's changes of its utility in the registry, sent like customers' actions: as
relayed jobs of custodial wallets, never from a key the API holds and never with a wait for a
receipt inside a request (docs/enrollment.md, "Registry changes").

``registerUtility`` for a utility the registry does not know is the registrar wallet's job (a
system wallet of the platform that the operator granted ``REGISTRAR_ROLE`` once with
``ovpp-wallet registry grant-registrar``); its territory's endpoints and the fee allowance then
follow as the utility wallet's own job. A registered utility's changes and its programs are the
utility wallet's jobs. Each change is a ``registry_changes`` row: REGISTERING → SENDING →
CONFIRMED (the catalog written from what landed) or FAILED. One is open per utility at a time,
and a utility asks at most ``OVPP_ADMIN_REGISTRY_CHANGES_PER_HOUR`` an hour: the operator pays
the gas. The onramp processor's follower ``advance_registry_changes`` moves them on, and so
does reading the utility (``advance_changes_of``)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from web3.exceptions import ContractLogicError

from chain.calls import Call
from core.db import utc_now
from core.errors import ConfigurationError, Forbidden, InvalidInput
from identity.models import Tenant
from identity.service import platform_account
from programs import repository
from programs.admin import utility_wallet
from programs.deps import ProgramServices
from programs.errors import RegistryChangesLimited, RegistryChangeUnderWay
from programs.models import (
    ERROR_LENGTH,
    OPEN_REGISTRY_CHANGES,
    Program,
    RegistryChange,
    RegistryChangeStatus,
    RegistryChangeTarget,
)
from programs.publishing import (
    ProgramSpec,
    UtilitySpec,
    checked_program_spec,
    checked_utility_spec,
    mirror_utility,
    program_call,
    program_row,
    registration_call,
    utility_calls,
    write_program,
)
from programs.registry import ovpp_token, registry_of
from registry_client.onchain import utility_id_of
from registry_client.types import UtilityRecord
from relayer.jobs import Display, GasPayment, queue_call
from relayer.models import JobKind, RelayStatus, RelayTransaction
from wallet.models import Wallet

logger = logging.getLogger(__name__)

REGISTRAR_NAME = "registry-registrar"
"""The platform's system wallet that registers utilities (``REGISTRAR_ROLE``)."""
CHANGE_KEY_PREFIX = "registry-change:"
FORWARD_OVERHEAD_GAS = 100_000
GAS_MARGIN_PERCENT = 25
"""Over the node's estimate of each call (which already counts a whole transaction's intrinsic
gas, more than a forwarded call pays): what the call is given in its forward request."""


async def registrar_wallet(services: ProgramServices) -> Wallet:
    account = await platform_account(services.db, name=REGISTRAR_NAME, keyring=services.keyring)
    return account.wallet


async def request_utility_change(
    services: ProgramServices, *, tenant: Tenant, spec: UtilitySpec
) -> RegistryChange | None:
    """Queue what brings the utility's registry record up to ``spec``: its registration when
    the registry does not know it, else the utility wallet's calls. ``None`` when the chain
    matches already (nothing is sent; the catalog is written from the record)."""
    spec = checked_utility_spec(spec)
    registry = registry_of(services.chain)
    wallet = await utility_wallet(services, tenant)
    record = await registry.utility(utility_id_of(tenant.slug))
    if record is None:
        registrar = await registrar_wallet(services)
        if not await registry.is_registrar(registrar.address):
            raise ConfigurationError(
                "the registrar wallet may not register utilities yet: the operator grants it "
                "once with `ovpp-wallet registry grant-registrar`"
            )
        call = registration_call(registry, tenant=tenant, spec=spec, admin=wallet.address)
        return await _open_change(
            services,
            tenant=tenant,
            target=RegistryChangeTarget.UTILITY,
            spec=spec.to_json(),
            wallet=registrar,
            calls=[call],
            status=RegistryChangeStatus.REGISTERING,
        )
    if record.admin != wallet.address:
        raise Forbidden("the registry's admin of this utility is not its wallet")
    calls = await utility_calls(services, record=record, name=tenant.name, spec=spec, wallet=wallet)
    if not calls:
        async with services.db.session() as session:
            await _refuse_if_open(session, tenant.id)
            await mirror_utility(session, tenant=tenant, wallet=wallet, record=record)
        return None
    return await _open_change(
        services,
        tenant=tenant,
        target=RegistryChangeTarget.UTILITY,
        spec=spec.to_json(),
        wallet=wallet,
        calls=calls,
        status=RegistryChangeStatus.SENDING,
    )


async def request_program_change(
    services: ProgramServices, *, tenant: Tenant, spec: ProgramSpec
) -> tuple[Program, RegistryChange]:
    """Queue ``upsertProgram`` as the utility's wallet. A new program's catalog row exists at
    once but is not offered (inactive) until the change lands; an existing one keeps what it
    was until then."""
    spec = checked_program_spec(spec)
    async with services.db.session() as session:
        utility = await repository.utility_of_tenant(session, tenant.id)
    if utility is None:
        raise InvalidInput("register the utility first (registerUtility)", field="externalId")
    wallet = await utility_wallet(services, tenant)
    call = program_call(
        registry_of(services.chain), utility=utility, spec=spec, sponsor=wallet.address
    )
    change = await _open_change(
        services,
        tenant=tenant,
        target=RegistryChangeTarget.PROGRAM,
        spec=spec.to_json(),
        wallet=wallet,
        calls=[call],
        status=RegistryChangeStatus.SENDING,
        external_id=spec.external_id,
    )
    async with services.db.session() as session:
        row = await program_row(session, tenant=tenant, utility=utility, spec=spec)
    return row, change


async def _refuse_if_open(session: AsyncSession, tenant_id: str) -> None:
    if await repository.open_registry_change(session, tenant_id) is not None:
        raise RegistryChangeUnderWay(
            "another registry change of this utility has not landed yet: ask again once it is "
            "CONFIRMED or FAILED (utilityAdmin.registryChanges)"
        )


async def _open_change(
    services: ProgramServices,
    *,
    tenant: Tenant,
    target: RegistryChangeTarget,
    spec: dict,
    wallet: Wallet,
    calls: list[Call],
    status: RegistryChangeStatus,
    external_id: str | None = None,
) -> RegistryChange:
    """The change's row and its first job, in one transaction: refused while another change
    of the utility is open (the partial unique index decides a race) or past the hourly limit,
    and when the chain would refuse a call (each is estimated first; nothing is queued)."""
    calls = await estimated(services, sender=wallet.address, calls=calls)
    try:
        async with services.db.session() as session:
            await _refuse_if_open(session, tenant.id)
            await _within_hourly_limit(session, services, tenant.id)
            change = RegistryChange(
                tenant_id=tenant.id,
                target=target.value,
                external_id=external_id,
                spec=spec,
                status=status.value,
            )
            session.add(change)
            await session.flush()
            job = await _queue(session, services, change=change, wallet=wallet, calls=calls)
            change.relay_transaction_id = job.id
            session.add(change)
    except IntegrityError as error:
        if not _is_open_change_race(error):
            raise
        raise RegistryChangeUnderWay(
            "another registry change of this utility was asked at the same moment"
        ) from error
    return change


def _is_open_change_race(error: IntegrityError) -> bool:
    """The partial unique index refused a second open change (PostgreSQL names the index,
    SQLite the column)."""
    text = str(error.orig)
    return "uq_registry_change_open" in text or "registry_changes.tenant_id" in text


async def estimated(services: ProgramServices, *, sender: str, calls: list[Call]) -> list[Call]:
    """Each call with the gas the node estimates for it sent by ``sender`` (ERC-2771: the
    registry sees the same sender as through the forwarder), plus a margin. A call the chain
    would refuse is ``InvalidInput`` naming the registry's error: no job ever pays for a revert
    it could have seen coming."""
    registry = registry_of(services.chain)
    priced = []
    for call in calls:
        request = {"from": sender, "to": call.target, "data": "0x" + call.data.hex()}
        try:
            gas = await services.chain.web3.eth.estimate_gas(request)  # type: ignore[arg-type]
        except ContractLogicError as error:
            raise InvalidInput(
                f"the registry would refuse this change: {registry.error_name(error)}"
            ) from error
        priced.append(replace(call, gas=gas * (100 + GAS_MARGIN_PERCENT) // 100))
    return priced


async def _within_hourly_limit(
    session: AsyncSession, services: ProgramServices, tenant_id: str
) -> None:
    limit = services.settings.admin_registry_changes_per_hour
    since = utc_now() - timedelta(hours=1)
    asked = await repository.registry_changes_since(session, tenant_id, since=since)
    if len(asked) >= limit:
        oldest = min(asked)
        retry = max(int((oldest + timedelta(hours=1) - utc_now()).total_seconds()) + 1, 1)
        raise RegistryChangesLimited(
            f"{limit} registry changes an hour at most: try again in {retry} s",
            retry_after_seconds=retry,
        )


async def _queue(
    session: AsyncSession,
    services: ProgramServices,
    *,
    change: RegistryChange,
    wallet: Wallet,
    calls: list[Call],
) -> RelayTransaction:
    """The wallet's job of ``calls`` (one atomic batch), its gas paid by the operator."""
    registry = registry_of(services.chain)
    token = ovpp_token(services.chain)
    return await queue_call(
        session,
        services=services,
        wallet=wallet,
        customer_id=wallet.customer_id,
        calls=calls,
        payment=GasPayment(),
        gas_limit=sum(call.gas for call in calls) + FORWARD_OVERHEAD_GAS,
        kind=JobKind.REGISTRY,
        idempotency_key=f"{CHANGE_KEY_PREFIX}{change.id}:{change.status}",
        request_fingerprint=change.id,
        display=Display(
            token=token.kind.value,
            token_address=token.address or "",
            to_address=registry.address,
            amount=0,
        ),
    )


# -- following a change to the end ---------------------------------------------------------------


async def advance_registry_changes(services: ProgramServices) -> bool:
    """The processor's follower: move every open change whose job has ended. Whether any moved."""
    async with services.db.session() as session:
        ended = await repository.registry_changes_with_ended_jobs(session)
    moved = False
    for change_id in ended:
        try:
            moved = await _advance(services, change_id) or moved
        except Exception:  # one change's trouble (the node, say) must not stop the others
            logger.exception("registry change %s: could not advance it", change_id)
    return moved


async def advance_changes_of(services: ProgramServices, tenant_id: str) -> None:
    """Move the utility's open change on if its job has ended (reading the utility does)."""
    async with services.db.session() as session:
        change = await repository.open_registry_change(session, tenant_id)
    if change is not None:
        await _advance(services, change.id)


async def _advance(services: ProgramServices, change_id: str) -> bool:
    try:
        return await _advance_once(services, change_id)
    except IntegrityError:  # another process queued the same follow-up first (SQLite)
        return False


async def _advance_once(services: ProgramServices, change_id: str) -> bool:
    async with services.db.session() as session:
        change = await session.get(RegistryChange, change_id)
        job = await _job_of(session, change)
        if change is None or job is None or job.status not in _ENDED:
            return False
        tenant = await session.get_one(Tenant, change.tenant_id)
    record = None
    if change.target == RegistryChangeTarget.UTILITY:
        # Read after the job ended: what landed, or (a failed follow-up) the registration.
        record = await registry_of(services.chain).utility(utility_id_of(tenant.slug))
        if record is None and job.status == RelayStatus.CONFIRMED:
            return False  # a node behind the one that confirmed it: next round
    wallet = await utility_wallet(services, tenant)
    follow_up, refused = await _follow_up(services, change, job, record, tenant, wallet)
    async with services.db.session() as session:
        change = await repository.lock_registry_change(session, change_id, job_id=job.id)
        if change is None:  # another process moved it meanwhile
            return False
        if job.status != RelayStatus.CONFIRMED or refused is not None:
            change.status = RegistryChangeStatus.FAILED.value
            reason = refused or job.error or f"its transaction ended {job.status}"
            change.error = reason[:ERROR_LENGTH]
        elif follow_up:
            change.status = RegistryChangeStatus.SENDING.value
            job = await _queue(session, services, change=change, wallet=wallet, calls=follow_up)
            change.relay_transaction_id = job.id
        else:
            change.status = RegistryChangeStatus.CONFIRMED.value
        if change.status != RegistryChangeStatus.SENDING:
            await _land(session, tenant=tenant, change=change, wallet=wallet, record=record)
        change.updated_at = utc_now()
        session.add(change)
    return True


async def _follow_up(
    services: ProgramServices,
    change: RegistryChange,
    job: RelayTransaction,
    record: UtilityRecord | None,
    tenant: Tenant,
    wallet: Wallet,
) -> tuple[list[Call], str | None]:
    """After a confirmed registration: the utility wallet's calls that finish it (endpoints,
    fee allowance), estimated; or why the chain would refuse them."""
    registered = change.status == RegistryChangeStatus.REGISTERING
    if record is None or not registered or job.status != RelayStatus.CONFIRMED:
        return [], None
    spec = UtilitySpec.from_json(change.spec)
    calls = await utility_calls(services, record=record, name=tenant.name, spec=spec, wallet=wallet)
    try:
        return await estimated(services, sender=wallet.address, calls=calls), None
    except InvalidInput as error:
        return [], error.message


_ENDED = (RelayStatus.CONFIRMED, RelayStatus.FAILED, RelayStatus.REPLACED)


async def _job_of(session: AsyncSession, change: RegistryChange | None) -> RelayTransaction | None:
    if change is None or change.status not in OPEN_REGISTRY_CHANGES:
        return None
    if change.relay_transaction_id is None:
        return None
    return await session.get(RelayTransaction, change.relay_transaction_id)


async def _land(
    session: AsyncSession,
    *,
    tenant: Tenant,
    change: RegistryChange,
    wallet: Wallet,
    record: UtilityRecord | None,
) -> None:
    """Write the catalog from what landed: the utility's record read back from the chain
    (after a failure too: a registration whose follow-up failed is still a registration), or,
    once CONFIRMED, the program's spec (the registry stores it as given)."""
    if change.target == RegistryChangeTarget.UTILITY:
        if record is not None:
            await mirror_utility(session, tenant=tenant, wallet=wallet, record=record)
        return
    if change.status != RegistryChangeStatus.CONFIRMED:
        return
    spec = ProgramSpec.from_json(change.spec)
    utility = await repository.utility_of_tenant(session, tenant.id)
    assert utility is not None
    row = await program_row(session, tenant=tenant, utility=utility, spec=spec)
    session.add(write_program(row, spec))
