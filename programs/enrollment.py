"""Enrollment through the OpenVPP registry: check, enroll, unenroll, and following the relayed
job to ACTIVE.

An enrollment runs the routing (capability check included) before anything is signed; a
failing check returns ``NotEligible`` and too little OVPP ``InsufficientFunds``, with nothing
charged and nothing written on chain. A ready enrollment becomes one relayed transaction: the
payer's OVPP approval and the registry's ``connect`` (which moves the fee to the utility's fee
recipient in the same call) and, unless gas is sponsored, the gas fee — all atomic.
Another utility's program, and a second live enrollment of a device in a program, are refused
first (``programs.walls``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from core.db import rows_by_id, utc_now
from core.errors import InvalidInput, NotFound
from core.idempotency import (
    ENROLL_KEY_PREFIX,
    UNENROLL_KEY_PREFIX,
    request_fingerprint,
    require_idempotency_key,
)
from identity.service import CustomerAccount
from programs import repository
from programs.card_cancel import ended_unpaid, unenroll_unpaid
from programs.deps import ProgramServices
from programs.devices import device_of_customer, site_of
from programs.errors import CardPaymentUnavailable, NotEligible
from programs.models import (
    Enrollment,
    EnrollmentStatus,
    FeePayer,
    Program,
    UtilityAccount,
)
from programs.notices import enrollment_changed
from programs.payment import (
    ENROLL_TX_GAS,
    UNENROLL_TX_GAS,
    approve_call,
    available_ovpp,
    gas_fee_in_ovpp,
    gas_payment,
    job_shape,
    ovpp_display,
    same_shape,
    utility_sponsors_gas,
)
from programs.registry import ovpp_token, registry_of, routing_of
from programs.status import refresh_status
from programs.walls import (
    lock_device,
    program_of_own_utility,
    refuse_second_enrollment,
    require_own_utility,
)
from registry_client.onchain import OnChainRegistry
from registry_client.types import PROTOCOLS, RoutingRequest, RoutingResult
from relayer.errors import InsufficientFunds, SponsorRefused
from relayer.jobs import GasPayment, queue_call, release_nonces, reserve_nonces
from relayer.models import JobKind, RelayTransaction
from wallet.models import Wallet

PAYMENT_METHODS = ("WALLET", "SPONSOR", "CARD")


@dataclass(frozen=True)
class EnrollmentCheck:
    routing: RoutingResult
    program: Program
    fee: int
    payer: str  # CUSTOMER or SPONSOR
    gas_sponsored: bool
    gas_fee: int


async def _utility_of(session: AsyncSession, tenant_id: str) -> UtilityAccount:
    utility = await repository.utility_of_tenant(session, tenant_id)
    if utility is None:
        raise NotFound("this utility is not onboarded in the registry")
    return utility


async def _utility_wallet(session: AsyncSession, utility: UtilityAccount) -> Wallet:
    wallet = await session.get(Wallet, utility.wallet_id)
    assert wallet is not None
    return wallet


async def check_enrollment(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    device_row_id: str,
    program_row_id: str,
    protocol: str,
    payment_method: str | None = None,
) -> EnrollmentCheck:
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol must be one of {', '.join(PROTOCOLS)}", field="protocol")
    program = await program_of_own_utility(session, account=account, program_row_id=program_row_id)
    device = await device_of_customer(
        session, customer_id=account.customer.id, device_row_id=device_row_id
    )
    utility_account = await _utility_of(session, program.tenant_id)
    method = payment_method or ("SPONSOR" if program.fee_payer == FeePayer.SPONSOR else "WALLET")
    if method not in PAYMENT_METHODS:
        raise InvalidInput("paymentMethod must be WALLET, SPONSOR or CARD", field="paymentMethod")
    sponsors_gas = await utility_sponsors_gas(session, program.tenant_id)
    gas_sponsored = method == "SPONSOR" or sponsors_gas
    gas_fee = 0
    if not gas_sponsored:
        gas_fee = await gas_fee_in_ovpp(services, gas_limit=ENROLL_TX_GAS)
    if method == "SPONSOR":
        payer_wallet = await _utility_wallet(session, utility_account)
    else:
        payer_wallet = account.wallet
    available = await available_ovpp(session, services, payer_wallet) - gas_fee
    routing = await routing_of(services.chain).route(
        RoutingRequest(
            site=site_of(device),
            utility_id=bytes.fromhex(utility_account.utility_id[2:]),
            make=device.make,
            model=device.model,
            serial=device.serial,
            protocol=protocol,
            program_id=bytes.fromhex(program.program_id[2:]),
            payer=payer_wallet.address,
            payer_available_ovpp=available if method != "CARD" else None,
        )
    )
    return EnrollmentCheck(
        routing=routing,
        program=program,
        fee=routing.connection_fee,
        payer="SPONSOR" if method == "SPONSOR" else "CUSTOMER",
        gas_sponsored=gas_sponsored,
        gas_fee=gas_fee,
    )


def not_eligible(routing: RoutingResult) -> NotEligible:
    return NotEligible(
        "the device cannot join this program: " + "; ".join(c.reason for c in routing.failing),
        failing=routing.failing,
    )


async def _refuse_unready(
    session: AsyncSession, services: ProgramServices, *, check: EnrollmentCheck, signer: Wallet
) -> None:
    """``NotEligible`` when a check other than the payer's funds fails, else
    ``InsufficientFunds`` for the fee and the gas fee."""
    if [c for c in check.routing.failing if c.name != "PAYER_CAN_PAY"]:
        raise not_eligible(check.routing)
    token = ovpp_token(services.chain)
    available = await available_ovpp(session, services, signer)
    raise InsufficientFunds(
        token=token.symbol,
        required=check.fee + check.gas_fee,
        available=available,
        decimals=token.decimals,
    )


async def _signer_of(
    session: AsyncSession,
    *,
    account: CustomerAccount,
    program: Program,
    utility: UtilityAccount,
    payment_method: str,
) -> Wallet:
    """The wallet that signs the connect: the utility's for a SPONSOR enrollment (the program
    must be sponsored), else the customer's."""
    if payment_method != "SPONSOR":
        return account.wallet
    if program.fee_payer != FeePayer.SPONSOR:
        raise SponsorRefused(
            "this program's utility does not pay the connection fee", reason="NOT_ELIGIBLE"
        )
    return await _utility_wallet(session, utility)


def _connect_calls(
    services: ProgramServices,
    *,
    registry: OnChainRegistry,
    routing: RoutingResult,
    account: CustomerAccount,
    payment_method: str,
    protocol: str,
    fee: int,
) -> list[Call]:
    """WALLET: the customer approves the fee and connects; SPONSOR: the utility connects the
    customer's device and pays the fee from its own wallet."""
    if payment_method == "WALLET":
        return [
            approve_call(services, spender=registry.address, amount=fee),
            connect_call(registry, routing=routing, protocol=protocol),
        ]
    return [
        registry.connect_sponsored(
            owner=account.wallet.address,
            device_id=routing.device_id,
            model_id=routing.model_id,
            program_id=routing.program_id,
            protocol=protocol,
        )
    ]


def connect_call(registry: OnChainRegistry, *, routing: RoutingResult, protocol: str) -> Call:
    return registry.connect(
        device_id=routing.device_id,
        model_id=routing.model_id,
        program_id=routing.program_id,
        protocol=protocol,
    )


async def enroll(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    device_row_id: str,
    program_row_id: str,
    protocol: str,
    payment_method: str,
    idempotency_key: str,
) -> Enrollment:
    require_idempotency_key(idempotency_key)
    if payment_method == "CARD":  # the card path is programs.card.enroll_by_card
        raise CardPaymentUnavailable("a card-paid enrollment goes through enroll_by_card")
    fingerprint = request_fingerprint(device_row_id, program_row_id, protocol, payment_method)
    program = await program_of_own_utility(session, account=account, program_row_id=program_row_id)
    utility = await _utility_of(session, program.tenant_id)
    signer = await _signer_of(
        session, account=account, program=program, utility=utility, payment_method=payment_method
    )
    # Decide the job's shape before locking (it fixes how many nonces the signer needs).
    sponsors_gas = await utility_sponsors_gas(session, program.tenant_id)
    gas_sponsored = payment_method == "SPONSOR" or sponsors_gas
    shape = job_shape(
        services, call_count=2 if payment_method == "WALLET" else 1, gas_sponsored=gas_sponsored
    )
    await lock_device(session, account=account, device_row_id=device_row_id)
    first_nonce = await reserve_nonces(
        session, wallet_id=signer.id, calls=shape[0], payment=shape[1]
    )
    existing = await repository.enrollment_by_key(
        session, customer_id=account.customer.id, idempotency_key=idempotency_key
    )
    if existing is not None:
        if existing.request_fingerprint != fingerprint:
            raise InvalidInput(
                "this idempotency key was already used for another enrollment",
                field="idempotencyKey",
            )
        await release_nonces(session, wallet_id=signer.id, calls=shape[0], payment=shape[1])
        return existing
    await refuse_second_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
    )
    check = await check_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
        protocol=protocol,
        payment_method=payment_method,
    )
    if not check.routing.ready:
        await _refuse_unready(session, services, check=check, signer=signer)
    return await _queue_connect(
        session,
        services=services,
        account=account,
        signer=signer,
        check=check,
        device_row_id=device_row_id,
        payment_method=payment_method,
        protocol=protocol,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        gas_sponsored=gas_sponsored,
        first_nonce=first_nonce,
        shape=shape,
    )


async def _queue_connect(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    signer: Wallet,
    check: EnrollmentCheck,
    device_row_id: str,
    payment_method: str,
    protocol: str,
    idempotency_key: str,
    fingerprint: str,
    gas_sponsored: bool,
    first_nonce: int,
    shape: tuple[list[Call], GasPayment],
) -> Enrollment:
    """Queue the ready enrollment's connect at the nonces reserved for ``shape`` (its gas paid
    as decided when they were reserved), and record the CONNECTING enrollment."""
    registry = registry_of(services.chain)
    program, routing = check.program, check.routing
    device = await device_of_customer(
        session, customer_id=account.customer.id, device_row_id=device_row_id
    )
    calls = _connect_calls(
        services,
        registry=registry,
        routing=routing,
        account=account,
        payment_method=payment_method,
        protocol=protocol,
        fee=check.fee,
    )
    payment = await gas_payment(
        session,
        services=services,
        tenant_id=program.tenant_id,
        customer_id=account.customer.id,
        gas_sponsored=gas_sponsored,
        gas_limit=ENROLL_TX_GAS,
        gas_fee=check.gas_fee,
        sponsored_program=payment_method == "SPONSOR",
    )
    assert same_shape(calls, payment, shape=shape)
    job = await queue_call(
        session,
        services=services,
        wallet=signer,
        customer_id=account.customer.id,
        calls=calls,
        payment=payment,
        gas_limit=ENROLL_TX_GAS,
        kind=JobKind.ENROLL,
        idempotency_key=f"{ENROLL_KEY_PREFIX}{account.customer.id}:{idempotency_key}",
        request_fingerprint=fingerprint,
        display=ovpp_display(
            services,
            to_address=registry.address,
            amount=check.fee if payment_method == "WALLET" else 0,
        ),
        first_nonce=first_nonce,
    )
    enrollment = Enrollment(
        customer_id=account.customer.id,
        device_row_id=device.id,
        program_row_id=program.id,
        tenant_id=program.tenant_id,
        protocol=protocol,
        payment_method=payment_method,
        status=EnrollmentStatus.CONNECTING,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        fee_amount=check.fee,
        relay_transaction_id=job.id,
        routing=routing_json(routing),
    )
    session.add(enrollment)
    await session.flush()
    await enrollment_changed(session, enrollment.id)
    return enrollment


def routing_json(routing: RoutingResult) -> dict:
    return {
        "ready": routing.ready,
        "checks": [
            {"name": c.name, "passed": c.passed, "reason": c.reason} for c in routing.checks
        ],
        "deviceId": "0x" + routing.device_id.hex(),
        "programId": "0x" + routing.program_id.hex(),
        "protocol": routing.protocol,
        "utilityEndpoint": routing.utility_endpoint,
        "deviceEndpoint": routing.device_endpoint,
        "utilityCaFingerprint": routing.utility_ca_fingerprint,
        "vendorCertFingerprint": routing.vendor_cert_fingerprint,
        "connectionParameters": routing.connection_parameters,
    }


async def unenroll(
    session: AsyncSession,
    *,
    services: ProgramServices,
    account: CustomerAccount,
    enrollment_id: str,
    idempotency_key: str,
) -> Enrollment:
    require_idempotency_key(idempotency_key)
    enrollment = await session.get(Enrollment, enrollment_id)
    if enrollment is None or enrollment.customer_id != account.customer.id:
        raise InvalidInput("no such enrollment", field="enrollmentId")
    require_own_utility(account, enrollment.tenant_id, field="enrollmentId")
    enrollment = await refresh_status(session, services=services, enrollment=enrollment)
    if enrollment.status == EnrollmentStatus.FEE_PENDING or await ended_unpaid(session, enrollment):
        return await unenroll_unpaid(
            session, services=services, enrollment=enrollment, idempotency_key=idempotency_key
        )
    if enrollment.unenroll_idempotency_key is not None:
        if enrollment.unenroll_idempotency_key != idempotency_key:
            raise InvalidInput(
                "this enrollment is already being unenrolled", field="idempotencyKey"
            )
        return enrollment
    if enrollment.status != EnrollmentStatus.ACTIVE or not enrollment.connection_id:
        raise InvalidInput(
            f"only an ACTIVE enrollment can be unenrolled (this one is {enrollment.status})",
            field="enrollmentId",
        )
    gas_sponsored = await utility_sponsors_gas(session, enrollment.tenant_id)
    shape = job_shape(services, call_count=1, gas_sponsored=gas_sponsored)
    first_nonce = await reserve_nonces(
        session, wallet_id=account.wallet.id, calls=shape[0], payment=shape[1]
    )
    gas_fee = 0
    if not gas_sponsored:
        gas_fee = await gas_fee_in_ovpp(services, gas_limit=UNENROLL_TX_GAS)
        available = await available_ovpp(session, services, account.wallet)
        if available < gas_fee:
            token = ovpp_token(services.chain)
            raise InsufficientFunds(
                token=token.symbol, required=gas_fee, available=available, decimals=18
            )
    payment = await gas_payment(
        session,
        services=services,
        tenant_id=enrollment.tenant_id,
        customer_id=account.customer.id,
        gas_sponsored=gas_sponsored,
        gas_limit=UNENROLL_TX_GAS,
        gas_fee=gas_fee,
    )
    registry = registry_of(services.chain)
    job = await queue_call(
        session,
        services=services,
        wallet=account.wallet,
        customer_id=account.customer.id,
        calls=[routing_of(services.chain).disconnect(bytes.fromhex(enrollment.connection_id[2:]))],
        payment=payment,
        gas_limit=UNENROLL_TX_GAS,
        kind=JobKind.UNENROLL,
        idempotency_key=f"{UNENROLL_KEY_PREFIX}{enrollment.id}",
        request_fingerprint=request_fingerprint(enrollment.id, "unenroll"),
        display=ovpp_display(services, to_address=registry.address, amount=0),
        first_nonce=first_nonce,
    )
    enrollment.unenroll_idempotency_key = idempotency_key
    enrollment.unenroll_relay_transaction_id = job.id
    enrollment.status = EnrollmentStatus.UNENROLLING
    enrollment.updated_at = utc_now()
    session.add(enrollment)
    await session.flush()
    await enrollment_changed(session, enrollment.id)
    return enrollment


async def enrollments_of(
    session: AsyncSession, *, services: ProgramServices, customer_id: str
) -> list[Enrollment]:
    rows = await repository.enrollments_of_customer(session, customer_id)
    # The jobs of those in flight in one query: refresh_status then finds them in the session.
    in_flight = [
        row.relay_transaction_id for row in rows if row.status == EnrollmentStatus.CONNECTING
    ]
    in_flight += [
        row.unenroll_relay_transaction_id
        for row in rows
        if row.status == EnrollmentStatus.UNENROLLING
    ]
    # Held while the rows refresh: the session maps them only as long as something refers to them.
    jobs = await rows_by_id(session, RelayTransaction, [job for job in in_flight if job])
    refreshed = [await refresh_status(session, services=services, enrollment=row) for row in rows]
    del jobs
    return refreshed
