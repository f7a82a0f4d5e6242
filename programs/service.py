"""Devices, the program catalog and enrollment through the OpenVPP registry.

An enrollment runs the routing (capability check included) before anything is signed; a
failing check returns ``NotEligible`` and too little OVPP ``InsufficientFunds``, with nothing
charged and nothing written on chain. A ready enrollment becomes one relayed transaction: the
payer's OVPP approval and the registry's ``connect`` (which moves the fee to the utility's fee
recipient in the same call) and, unless gas is sponsored, the gas fee — all atomic.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from chain.erc20 import erc20_approve_data
from chain.tokens import TokenInfo, TokenKind
from core.db import utc_now
from core.errors import Forbidden, InvalidInput, NotFound
from core.idempotency import (
    ENROLL_KEY_PREFIX,
    UNENROLL_KEY_PREFIX,
    request_fingerprint,
    require_idempotency_key,
)
from identity.models import Tenant
from identity.service import CustomerAccount
from programs.deps import ProgramServices
from programs.errors import CardPaymentUnavailable, NotEligible
from programs.models import (
    ERROR_LENGTH,
    Device,
    Enrollment,
    EnrollmentStatus,
    FeePayer,
    Program,
    UtilityAccount,
)
from registry_client.onchain import APPROVE_CALL_GAS, OnChainRegistry
from registry_client.routing import device_id_of, model_id_of
from registry_client.service import OnChainRoutingService, RoutingService
from registry_client.types import PROTOCOLS, RoutingRequest, RoutingResult, SiteAddress
from relayer import sponsorship
from relayer.errors import InsufficientFunds, SponsorRefused
from relayer.jobs import Display, GasPayment, enqueue_calls, required_nonces, take_forwarder_nonces
from relayer.keys import relayer_key_for
from relayer.models import JobKind, RelayStatus, RelayTransaction
from relayer.pricing import GasQuote, fee_in_token
from relayer.service import current_gas_price, open_debits
from wallet.models import Wallet

ENROLL_TX_GAS = 800_000
UNENROLL_TX_GAS = 300_000
PAYMENT_METHODS = ("WALLET", "SPONSOR", "CARD")


def registry_of(services: ProgramServices) -> OnChainRegistry:
    addresses = services.chain.addresses
    if addresses is None or not addresses.registry:
        raise NotFound("the OpenVPP registry is not deployed on this chain")
    return OnChainRegistry(services.chain.web3, addresses.registry)


def routing_of(services: ProgramServices) -> RoutingService:
    """The routing service in use: the on-chain resolver (a remote one would plug in here)."""
    return OnChainRoutingService(registry_of(services))


def ovpp_token(services: ProgramServices) -> TokenInfo:
    return next(t for t in services.chain.tokens if t.kind == TokenKind.OVPP)


# -- devices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceInput:
    make: str
    model: str
    serial: str
    site: SiteAddress


async def add_device(
    session: AsyncSession, *, services: ProgramServices, account: CustomerAccount, raw: DeviceInput
) -> Device:
    """Register the customer's device (idempotent on make+model+serial)."""
    for name, value, limit in (
        ("make", raw.make, 100),
        ("model", raw.model, 100),
        ("serial", raw.serial, 100),
    ):
        if not value.strip() or len(value) > limit:
            raise InvalidInput(f"{name} must be 1 to {limit} characters", field=name)
    site = raw.site
    if len(site.country) != 2 or not site.country.isalpha():
        raise InvalidInput(
            "country is an ISO 3166-1 alpha-2 code such as US", field="siteAddress.country"
        )
    if not site.postal_code.strip() or not site.line1.strip() or not site.city.strip():
        raise InvalidInput(
            "the site address needs line1, city and postal code", field="siteAddress"
        )
    model = await registry_of(services).device_model(model_id_of(raw.make, raw.model))
    if model is None:
        raise InvalidInput(
            f"{raw.make} {raw.model} is not a registered device model; pick one from deviceModels",
            field="model",
        )
    device_id = "0x" + device_id_of(raw.make, raw.model, raw.serial).hex()
    existing = (
        await session.execute(
            select(Device).where(
                Device.customer_id == account.customer.id, Device.device_id == device_id
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    device = Device(
        customer_id=account.customer.id,
        device_id=device_id,
        model_id="0x" + model.model_id.hex(),
        make=raw.make,
        model=raw.model,
        serial=raw.serial,
        device_type=model.device_type.name,
        site_line1=site.line1,
        site_city=site.city,
        site_region=site.region.upper(),
        site_postal_code=site.postal_code.strip(),
        site_country=site.country.upper(),
    )
    session.add(device)
    await session.flush()
    return device


def site_of(device: Device) -> SiteAddress:
    return SiteAddress(
        line1=device.site_line1,
        city=device.site_city,
        region=device.site_region,
        postal_code=device.site_postal_code,
        country=device.site_country,
    )


async def devices_of(session: AsyncSession, customer_id: str) -> list[Device]:
    statement = select(Device).where(Device.customer_id == customer_id).order_by(Device.created_at)
    return list((await session.execute(statement)).scalars())


async def device_of_customer(
    session: AsyncSession, *, customer_id: str, device_row_id: str
) -> Device:
    device = await session.get(Device, device_row_id)
    if device is None or device.customer_id != customer_id:
        raise InvalidInput("no such device: add it first", field="deviceId")
    return device


# -- catalog ------------------------------------------------------------------------------------


async def programs_at(
    session: AsyncSession, *, site: SiteAddress, device_type: str | None
) -> list[tuple[Program, Tenant, UtilityAccount]]:
    """Active programs whose utility serves the site (and that accept the device type)."""
    from registry_client.routing import postal_code_in

    rows = (
        await session.execute(
            select(Program, Tenant, UtilityAccount)
            .join(Tenant, Tenant.id == Program.tenant_id)
            .join(UtilityAccount, UtilityAccount.tenant_id == Program.tenant_id)
            .where(Program.active.is_(True))
            .order_by(Program.name)
        )
    ).all()
    result = []
    for program, tenant, utility in rows:
        if utility.country.upper() != site.country.upper():
            continue
        region = utility.region.upper()
        if region and region not in (
            site.region.upper(),
            f"{site.country.upper()}-{site.region.upper()}",
        ):
            continue
        if not postal_code_in(site.postal_code, tuple(utility.postal_codes)):
            continue
        if device_type and device_type not in program.eligible_device_types:
            continue
        result.append((program, tenant, utility))
    return result


async def program_by_id(session: AsyncSession, program_row_id: str) -> Program:
    program = await session.get(Program, program_row_id)
    if program is None:
        raise InvalidInput("no such program", field="programId")
    return program


# -- enrollment ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollmentCheck:
    routing: RoutingResult
    program: Program
    fee: int
    payer: str  # CUSTOMER or SPONSOR
    gas_sponsored: bool
    gas_fee: int


async def _utility_of(session: AsyncSession, tenant_id: str) -> UtilityAccount:
    utility = (
        await session.execute(select(UtilityAccount).where(UtilityAccount.tenant_id == tenant_id))
    ).scalar_one_or_none()
    if utility is None:
        raise NotFound("this utility is not onboarded in the registry")
    return utility


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
    device = await device_of_customer(
        session, customer_id=account.customer.id, device_row_id=device_row_id
    )
    program = await program_by_id(session, program_row_id)
    utility_account = await _utility_of(session, program.tenant_id)
    method = payment_method or ("SPONSOR" if program.fee_payer == FeePayer.SPONSOR else "WALLET")
    if method not in PAYMENT_METHODS:
        raise InvalidInput("paymentMethod must be WALLET, SPONSOR or CARD", field="paymentMethod")
    utility_id = bytes.fromhex(utility_account.utility_id[2:])
    program_id = bytes.fromhex(program.program_id[2:])

    gas_sponsor = await sponsorship.sponsor_of_tenant(session, program.tenant_id)
    gas_sponsored = method == "SPONSOR" or (
        gas_sponsor is not None and gas_sponsor.active and gas_sponsor.sponsors_transfers
    )
    gas_fee = 0
    if not gas_sponsored:
        gas_fee = await gas_fee_in_ovpp(services, gas_limit=ENROLL_TX_GAS)
    if method == "SPONSOR":
        payer_wallet = await session.get(Wallet, utility_account.wallet_id)
        assert payer_wallet is not None
    else:
        payer_wallet = account.wallet
    available = await _available_ovpp(session, services, payer_wallet) - gas_fee
    routing = await routing_of(services).route(
        RoutingRequest(
            site=site_of(device),
            utility_id=utility_id,
            make=device.make,
            model=device.model,
            serial=device.serial,
            protocol=protocol,
            program_id=program_id,
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


async def _available_ovpp(session: AsyncSession, services: ProgramServices, wallet: Wallet) -> int:
    debits = await open_debits(session, wallet.id)
    balances = {
        token.kind.value: raw for token, raw in await services.chain.balances(wallet.address)
    }
    return balances.get(TokenKind.OVPP.value, 0) - debits.get(TokenKind.OVPP.value, 0)


async def gas_fee_in_ovpp(services: ProgramServices, *, gas_limit: int) -> int:
    """The customer's gas fee in OVPP for a relayed action of ``gas_limit`` (relayer/pricing.py)."""
    return await fee_in_token(
        gas=GasQuote(gas_limit, await current_gas_price(services)),
        fee_token=TokenKind.OVPP,
        fee_token_decimals=18,
        oracle=services.price_oracle,
        markup_bps=services.settings.fee_markup_bps,
        max_age_seconds=services.settings.price_max_age_seconds,
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
    program = await program_by_id(session, program_row_id)
    utility_account = await _utility_of(session, program.tenant_id)
    if payment_method == "SPONSOR":
        if program.fee_payer != FeePayer.SPONSOR:
            raise SponsorRefused(
                "this program's utility does not pay the connection fee", reason="NOT_ELIGIBLE"
            )
        signer = await session.get(Wallet, utility_account.wallet_id)
        assert signer is not None
    else:
        signer = account.wallet
    # Decide the call shape before locking (it fixes how many nonces the signer needs).
    gas_sponsor = await sponsorship.sponsor_of_tenant(session, program.tenant_id)
    gas_sponsored = payment_method == "SPONSOR" or (
        gas_sponsor is not None and gas_sponsor.active and gas_sponsor.sponsors_transfers
    )
    nonce_count = 2 if payment_method == "WALLET" else 1
    if not gas_sponsored:
        nonce_count += 1
    first_nonce = await take_forwarder_nonces(session, wallet_id=signer.id, count=nonce_count)

    existing = (
        await session.execute(
            select(Enrollment).where(
                Enrollment.customer_id == account.customer.id,
                Enrollment.idempotency_key == idempotency_key,
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        if existing.request_fingerprint != fingerprint:
            raise InvalidInput(
                "this idempotency key was already used for another enrollment",
                field="idempotencyKey",
            )
        await take_forwarder_nonces(session, wallet_id=signer.id, count=-nonce_count)
        return existing

    check = await check_enrollment(
        session,
        services=services,
        account=account,
        device_row_id=device_row_id,
        program_row_id=program_row_id,
        protocol=protocol,
        payment_method=payment_method,
    )
    routing = check.routing
    if not routing.ready:
        non_funds = [c for c in routing.failing if c.name != "PAYER_CAN_PAY"]
        if non_funds:
            raise NotEligible(
                "the device cannot join this program: "
                + "; ".join(c.reason for c in routing.failing),
                failing=routing.failing,
            )
        token = ovpp_token(services)
        available = await _available_ovpp(session, services, signer)
        raise InsufficientFunds(
            token=token.symbol,
            required=check.fee + check.gas_fee,
            available=available,
            decimals=token.decimals,
        )

    registry = registry_of(services)
    device = await device_of_customer(
        session, customer_id=account.customer.id, device_row_id=device_row_id
    )
    calls: list[Call] = []
    if payment_method == "WALLET":
        calls.append(_approve_call(services, spender=registry.address, amount=check.fee))
        calls.append(
            registry.connect(
                device_id=routing.device_id,
                model_id=routing.model_id,
                program_id=routing.program_id,
                protocol=protocol,
            )
        )
    else:
        calls.append(
            registry.connect_sponsored(
                owner=account.wallet.address,
                device_id=routing.device_id,
                model_id=routing.model_id,
                program_id=routing.program_id,
                protocol=protocol,
            )
        )
    payment = await _gas_payment(
        session,
        services=services,
        tenant_id=program.tenant_id,
        customer_id=account.customer.id,
        gas_sponsored=gas_sponsored,
        gas_limit=ENROLL_TX_GAS,
        gas_fee=check.gas_fee,
        sponsored_program=payment_method == "SPONSOR",
    )
    assert required_nonces(calls, payment) == nonce_count
    job = await enqueue_calls(
        session,
        services=services,
        wallet=signer,
        customer_id=account.customer.id,
        first_nonce=first_nonce,
        calls=calls,
        payment=payment,
        gas_limit=ENROLL_TX_GAS,
        kind=JobKind.ENROLL,
        idempotency_key=f"{ENROLL_KEY_PREFIX}{account.customer.id}:{idempotency_key}",
        request_fingerprint=fingerprint,
        display=Display(
            token=TokenKind.OVPP.value,
            token_address=ovpp_token(services).address or "",
            to_address=registry.address,
            amount=check.fee if payment_method == "WALLET" else 0,
        ),
        relayer_key_id=await relayer_key_for(session, signer.id),
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
        routing=_routing_json(routing),
    )
    session.add(enrollment)
    await session.flush()
    return enrollment


def _approve_call(services: ProgramServices, *, spender: str, amount: int) -> Call:
    return Call(
        target=ovpp_token(services).address or "",
        data=erc20_approve_data(spender, amount),
        gas=APPROVE_CALL_GAS,
    )


async def _gas_payment(
    session: AsyncSession,
    *,
    services: ProgramServices,
    tenant_id: str,
    customer_id: str,
    gas_sponsored: bool,
    gas_limit: int,
    gas_fee: int,
    sponsored_program: bool = False,
) -> GasPayment:
    if not gas_sponsored:
        return GasPayment(fee_token=ovpp_token(services), fee_amount=gas_fee)
    sponsor = await sponsorship.sponsor_of_tenant(session, tenant_id)
    if sponsor is None:
        raise SponsorRefused(
            "the utility does not sponsor gas for this action", reason="NOT_ELIGIBLE"
        )
    # Priced before the sponsor's lock, which every sponsored action of the utility waits on
    # (the price is cached for about a block; a stale cache is a node call).
    cost = gas_limit * await current_gas_price(services)
    sponsor = await sponsorship.lock(session, sponsor)
    await sponsorship.check_budget(
        session,
        sponsor=sponsor,
        customer_id=customer_id,
        cost_wei=cost,
        sponsored_program=sponsored_program,
    )
    return GasPayment(sponsor=sponsor, sponsor_charge_wei=cost)


def _routing_json(routing: RoutingResult) -> dict:
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
    enrollment = await refresh_status(session, services=services, enrollment=enrollment)
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
    gas_sponsor = await sponsorship.sponsor_of_tenant(session, enrollment.tenant_id)
    gas_sponsored = (
        gas_sponsor is not None and gas_sponsor.active and gas_sponsor.sponsors_transfers
    )
    first_nonce = await take_forwarder_nonces(
        session, wallet_id=account.wallet.id, count=1 if gas_sponsored else 2
    )
    gas_fee = 0
    if not gas_sponsored:
        gas_fee = await gas_fee_in_ovpp(services, gas_limit=UNENROLL_TX_GAS)
        available = await _available_ovpp(session, services, account.wallet)
        if available < gas_fee:
            token = ovpp_token(services)
            raise InsufficientFunds(
                token=token.symbol, required=gas_fee, available=available, decimals=18
            )
    payment = await _gas_payment(
        session,
        services=services,
        tenant_id=enrollment.tenant_id,
        customer_id=account.customer.id,
        gas_sponsored=gas_sponsored,
        gas_limit=UNENROLL_TX_GAS,
        gas_fee=gas_fee,
    )
    registry = registry_of(services)
    job = await enqueue_calls(
        session,
        services=services,
        wallet=account.wallet,
        customer_id=account.customer.id,
        first_nonce=first_nonce,
        calls=[routing_of(services).disconnect(bytes.fromhex(enrollment.connection_id[2:]))],
        payment=payment,
        gas_limit=UNENROLL_TX_GAS,
        kind=JobKind.UNENROLL,
        idempotency_key=f"{UNENROLL_KEY_PREFIX}{enrollment.id}",
        request_fingerprint=request_fingerprint(enrollment.id, "unenroll"),
        display=Display(
            token=TokenKind.OVPP.value,
            token_address=ovpp_token(services).address or "",
            to_address=registry.address,
            amount=0,
        ),
        relayer_key_id=await relayer_key_for(session, account.wallet.id),
    )
    enrollment.unenroll_idempotency_key = idempotency_key
    enrollment.unenroll_relay_transaction_id = job.id
    enrollment.status = EnrollmentStatus.UNENROLLING
    enrollment.updated_at = utc_now()
    session.add(enrollment)
    await session.flush()
    return enrollment


BOUGHT_FEE_KEPT = (
    "the OVPP bought with the card for the fee stays in your wallet: enroll again paying from "
    "the wallet, or send it"
)
"""Told when a card-paid enrollment fails after its OVPP arrived: the card payment is not
refunded (the tokens were delivered and are the customer's), so say where the value is."""


def with_bought_fee_kept(reason: str) -> str:
    """``reason`` and :data:`BOUGHT_FEE_KEPT`, within the 500 characters of ``error``, the
    reason cut if it must be so the sentence about the OVPP is never lost."""
    room = ERROR_LENGTH - len(BOUGHT_FEE_KEPT) - 2
    return f"{reason[:room]}; {BOUGHT_FEE_KEPT}"


async def refresh_status(
    session: AsyncSession, *, services: ProgramServices, enrollment: Enrollment
) -> Enrollment:
    """Move the enrollment along with its relayed transaction and the registry (idempotent)."""
    if enrollment.status == EnrollmentStatus.CONNECTING and enrollment.relay_transaction_id:
        job = await session.get(RelayTransaction, enrollment.relay_transaction_id)
        if job is not None and job.status == RelayStatus.CONFIRMED:
            registry = registry_of(services)
            device = await session.get(Device, enrollment.device_row_id)
            program = await session.get(Program, enrollment.program_row_id)
            assert device is not None and program is not None
            connection_id = await registry.active_connection(
                bytes.fromhex(device.device_id[2:]), bytes.fromhex(program.program_id[2:])
            )
            if connection_id is not None:
                enrollment.connection_id = "0x" + connection_id.hex()
                enrollment.connection_parameters = (
                    enrollment.routing.get("connectionParameters") or {}
                )
                enrollment.status = EnrollmentStatus.ACTIVE
            else:
                enrollment.status = EnrollmentStatus.FAILED
                enrollment.error = "the registry shows no active connection"
        elif job is not None and job.status in (RelayStatus.FAILED, RelayStatus.REPLACED):
            enrollment.status = EnrollmentStatus.FAILED
            enrollment.error = job.error or "the connection transaction failed"
            if enrollment.payment_method == "CARD":
                # The connection and its fees are one call: nothing of the OVPP was spent.
                enrollment.error = with_bought_fee_kept(enrollment.error)
    elif (
        enrollment.status == EnrollmentStatus.UNENROLLING
        and enrollment.unenroll_relay_transaction_id
    ):
        job = await session.get(RelayTransaction, enrollment.unenroll_relay_transaction_id)
        if job is not None and job.status == RelayStatus.CONFIRMED:
            enrollment.status = EnrollmentStatus.UNENROLLED
        elif job is not None and job.status in (RelayStatus.FAILED, RelayStatus.REPLACED):
            enrollment.status = EnrollmentStatus.ACTIVE
            enrollment.unenroll_idempotency_key = None
            enrollment.error = job.error or "the disconnection failed"
    if enrollment in session.dirty:
        enrollment.updated_at = utc_now()
        session.add(enrollment)
        await session.flush()
    return enrollment


async def enrollments_of(
    session: AsyncSession, *, services: ProgramServices, customer_id: str
) -> list[Enrollment]:
    rows = list(
        (
            await session.execute(
                select(Enrollment)
                .where(Enrollment.customer_id == customer_id)
                .order_by(Enrollment.created_at)
            )
        ).scalars()
    )
    return [await refresh_status(session, services=services, enrollment=row) for row in rows]


def require_same_tenant(tenant_id: str, resource_tenant_id: str) -> None:
    if tenant_id != resource_tenant_id:
        raise Forbidden("this belongs to another utility")
