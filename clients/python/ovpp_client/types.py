"""The results of the operations in ``clients/operations``, as typed, immutable values.

Amounts arrive as decimal strings and become ``Decimal`` (never a float); base-unit integers
become ``int``; timestamps become aware ``datetime``. Each type is built from the wire dict
its operation selects, by ``from_wire``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

Wire = dict[str, Any]


def _datetime(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True, slots=True)
class Token:
    symbol: str
    name: str
    decimals: int
    address: str | None  # None for the chain's native (gas) token

    @classmethod
    def from_wire(cls, wire: Wire) -> Token:
        return cls(
            symbol=wire["symbol"],
            name=wire["name"],
            decimals=wire["decimals"],
            address=wire["address"],
        )


@dataclass(frozen=True, slots=True)
class Balance:
    token: Token
    amount: Decimal
    raw: int

    @classmethod
    def from_wire(cls, wire: Wire) -> Balance:
        return cls(
            token=Token.from_wire(wire["token"]),
            amount=Decimal(wire["amount"]),
            raw=int(wire["raw"]),
        )


@dataclass(frozen=True, slots=True)
class Viewer:
    id: str
    email: str | None
    address: str
    balances: list[Balance]

    def balance(self, symbol: str) -> Balance:
        """The balance of one token by symbol (``OVPP``, ``USDC``, the native symbol)."""
        return next(balance for balance in self.balances if balance.token.symbol == symbol)

    @classmethod
    def from_wire(cls, wire: Wire) -> Viewer:
        return cls(
            id=wire["id"],
            email=wire["email"],
            address=wire["wallet"]["address"],
            balances=[Balance.from_wire(item) for item in wire["wallet"]["balances"]],
        )


@dataclass(frozen=True, slots=True)
class Chain:
    chain_id: int
    name: str

    @classmethod
    def from_wire(cls, wire: Wire) -> Chain:
        return cls(chain_id=wire["chainId"], name=wire["name"])


@dataclass(frozen=True, slots=True)
class FeeQuote:
    id: str
    fee_token: Token
    fee_amount: Decimal  # 0 when sponsored
    sponsored: bool
    sponsor_name: str | None
    expires_at: datetime

    @classmethod
    def from_wire(cls, wire: Wire) -> FeeQuote:
        return cls(
            id=wire["id"],
            fee_token=Token.from_wire(wire["feeToken"]),
            fee_amount=Decimal(wire["feeAmount"]),
            sponsored=wire["sponsored"],
            sponsor_name=wire["sponsorName"],
            expires_at=datetime.fromisoformat(wire["expiresAt"]),
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    status: str  # QUEUED SIGNED SUBMITTED MINED CONFIRMED FAILED REPLACED
    hash: str | None
    token: Token
    amount: Decimal
    to: str
    fee_token: Token | None
    fee_amount: Decimal
    sponsored: bool
    created_at: datetime
    confirmed_at: datetime | None
    error: str | None

    FINAL_STATUSES = frozenset({"CONFIRMED", "FAILED", "REPLACED"})

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES

    @classmethod
    def from_wire(cls, wire: Wire) -> Transaction:
        return cls(
            id=wire["id"],
            status=wire["status"],
            hash=wire["hash"],
            token=Token.from_wire(wire["token"]),
            amount=Decimal(wire["amount"]),
            to=wire["to"],
            fee_token=Token.from_wire(wire["feeToken"]) if wire["feeToken"] else None,
            fee_amount=Decimal(wire["feeAmount"]),
            sponsored=wire["sponsored"],
            created_at=datetime.fromisoformat(wire["createdAt"]),
            confirmed_at=_datetime(wire["confirmedAt"]),
            error=wire["error"],
        )


@dataclass(frozen=True, slots=True)
class TransactionPage:
    transactions: list[Transaction]
    has_next_page: bool
    end_cursor: str | None  # pass as ``after`` for the next page

    @classmethod
    def from_wire(cls, wire: Wire) -> TransactionPage:
        return cls(
            transactions=[Transaction.from_wire(edge["node"]) for edge in wire["edges"]],
            has_next_page=wire["pageInfo"]["hasNextPage"],
            end_cursor=wire["pageInfo"]["endCursor"],
        )


# Expected refusals: the typed members of the mutations' result unions.


@dataclass(frozen=True, slots=True)
class InsufficientFunds:
    message: str
    token_symbol: str
    required: Decimal
    available: Decimal


@dataclass(frozen=True, slots=True)
class PolicyViolation:
    message: str
    rule: str


@dataclass(frozen=True, slots=True)
class QuoteExpired:
    message: str


@dataclass(frozen=True, slots=True)
class SponsorRefused:
    message: str
    reason: str
    sponsor_name: str | None


@dataclass(frozen=True, slots=True)
class InvalidInput:
    message: str
    field: str | None


@dataclass(frozen=True, slots=True)
class OnrampUnavailable:
    message: str


@dataclass(frozen=True, slots=True)
class CapabilityCheck:
    name: str
    passed: bool
    reason: str

    @classmethod
    def from_wire(cls, wire: Wire) -> CapabilityCheck:
        return cls(name=wire["name"], passed=wire["passed"], reason=wire["reason"])


@dataclass(frozen=True, slots=True)
class NotEligible:
    message: str
    failing_checks: list[CapabilityCheck]


Refusal = (
    InsufficientFunds
    | PolicyViolation
    | QuoteExpired
    | SponsorRefused
    | InvalidInput
    | OnrampUnavailable
    | NotEligible
)


def refusal_from_wire(wire: Wire) -> Refusal:
    """The typed refusal named by ``__typename``."""
    kind = wire["__typename"]
    if kind == "InsufficientFunds":
        return InsufficientFunds(
            message=wire["message"],
            token_symbol=wire["token"]["symbol"],
            required=Decimal(wire["required"]),
            available=Decimal(wire["available"]),
        )
    if kind == "PolicyViolation":
        return PolicyViolation(message=wire["message"], rule=wire["rule"])
    if kind == "QuoteExpired":
        return QuoteExpired(message=wire["message"])
    if kind == "SponsorRefused":
        return SponsorRefused(
            message=wire["message"], reason=wire["reason"], sponsor_name=wire["sponsorName"]
        )
    if kind == "InvalidInput":
        return InvalidInput(message=wire["message"], field=wire["field"])
    if kind == "OnrampUnavailable":
        return OnrampUnavailable(message=wire["message"])
    if kind == "NotEligible":
        return NotEligible(
            message=wire["message"],
            failing_checks=[CapabilityCheck.from_wire(item) for item in wire["failingChecks"]],
        )
    raise ValueError(f"unknown result type {kind!r}")


@dataclass(frozen=True, slots=True)
class SiteAddress:
    line1: str
    city: str
    region: str  # subdivision code, e.g. "CA"
    postal_code: str
    country: str  # ISO 3166-1 alpha-2

    def to_wire(self) -> Wire:
        return {
            "line1": self.line1,
            "city": self.city,
            "region": self.region,
            "postalCode": self.postal_code,
            "country": self.country,
        }

    @classmethod
    def from_wire(cls, wire: Wire) -> SiteAddress:
        return cls(
            line1=wire["line1"],
            city=wire["city"],
            region=wire["region"],
            postal_code=wire["postalCode"],
            country=wire["country"],
        )


@dataclass(frozen=True, slots=True)
class Capabilities:
    max_charge_kw: Decimal
    max_discharge_kw: Decimal
    energy_kwh: Decimal
    nominal_voltage: int

    @classmethod
    def from_wire(cls, wire: Wire) -> Capabilities:
        return cls(
            max_charge_kw=Decimal(wire["maxChargeKw"]),
            max_discharge_kw=Decimal(wire["maxDischargeKw"]),
            energy_kwh=Decimal(wire["energyKwh"]),
            nominal_voltage=wire["nominalVoltage"],
        )


@dataclass(frozen=True, slots=True)
class DeviceModel:
    make: str
    model: str
    device_type: str
    protocols: list[str]
    capabilities: Capabilities

    @classmethod
    def from_wire(cls, wire: Wire) -> DeviceModel:
        return cls(
            make=wire["make"],
            model=wire["model"],
            device_type=wire["deviceType"],
            protocols=list(wire["protocols"]),
            capabilities=Capabilities.from_wire(wire["capabilities"]),
        )


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    make: str
    model: str
    serial: str
    device_type: str
    site_address: SiteAddress

    @classmethod
    def from_wire(cls, wire: Wire) -> Device:
        return cls(
            id=wire["id"],
            make=wire["make"],
            model=wire["model"],
            serial=wire["serial"],
            device_type=wire["deviceType"],
            site_address=SiteAddress.from_wire(wire["siteAddress"]),
        )


@dataclass(frozen=True, slots=True)
class Program:
    id: str
    name: str
    utility: str
    description: str
    fee_amount: Decimal
    fee_payer: str  # CUSTOMER SPONSOR CARD
    sponsored: bool
    protocols: list[str]
    eligible_device_types: list[str]
    enrollment_bonus: Decimal
    per_event_reward: Decimal
    active: bool

    @classmethod
    def from_wire(cls, wire: Wire) -> Program:
        return cls(
            id=wire["id"],
            name=wire["name"],
            utility=wire["utility"],
            description=wire["description"],
            fee_amount=Decimal(wire["feeAmount"]),
            fee_payer=wire["feePayer"],
            sponsored=wire["sponsored"],
            protocols=list(wire["protocols"]),
            eligible_device_types=list(wire["eligibleDeviceTypes"]),
            enrollment_bonus=Decimal(wire["incentives"]["enrollmentBonus"]),
            per_event_reward=Decimal(wire["incentives"]["perEventReward"]),
            active=wire["active"],
        )


@dataclass(frozen=True, slots=True)
class ProgramSummary:
    """A program as an enrollment names it."""

    id: str
    name: str
    utility: str
    fee_amount: Decimal
    fee_payer: str
    sponsored: bool
    protocols: list[str]

    @classmethod
    def from_wire(cls, wire: Wire) -> ProgramSummary:
        return cls(
            id=wire["id"],
            name=wire["name"],
            utility=wire["utility"],
            fee_amount=Decimal(wire["feeAmount"]),
            fee_payer=wire["feePayer"],
            sponsored=wire["sponsored"],
            protocols=list(wire["protocols"]),
        )


@dataclass(frozen=True, slots=True)
class EnrollmentCheck:
    ready: bool
    fee: Decimal
    fee_payer: str
    gas_sponsored: bool
    gas_fee: Decimal
    checks: list[CapabilityCheck]
    failing_checks: list[CapabilityCheck]

    @classmethod
    def from_wire(cls, wire: Wire) -> EnrollmentCheck:
        return cls(
            ready=wire["ready"],
            fee=Decimal(wire["fee"]),
            fee_payer=wire["feePayer"],
            gas_sponsored=wire["gasSponsored"],
            gas_fee=Decimal(wire["gasFee"]),
            checks=[CapabilityCheck.from_wire(item) for item in wire["checks"]],
            failing_checks=[CapabilityCheck.from_wire(item) for item in wire["failingChecks"]],
        )


@dataclass(frozen=True, slots=True)
class Enrollment:
    id: str
    status: str  # REQUESTED ROUTED FEE_PENDING CONNECTING ACTIVE FAILED UNENROLLING UNENROLLED
    protocol: str
    payment_method: str
    fee: Decimal
    connection_id: str | None
    connection_parameters: dict[str, Any] | None
    error: str | None
    created_at: datetime
    payment_client_secret: str | None
    device: Device
    program: ProgramSummary

    @classmethod
    def from_wire(cls, wire: Wire) -> Enrollment:
        return cls(
            id=wire["id"],
            status=wire["status"],
            protocol=wire["protocol"],
            payment_method=wire["paymentMethod"],
            fee=Decimal(wire["fee"]),
            connection_id=wire["connectionId"],
            connection_parameters=wire["connectionParameters"],
            error=wire["error"],
            created_at=datetime.fromisoformat(wire["createdAt"]),
            payment_client_secret=wire["paymentClientSecret"],
            device=Device.from_wire(wire["device"]),
            program=ProgramSummary.from_wire(wire["program"]),
        )


@dataclass(frozen=True, slots=True)
class DevicesAndEnrollments:
    devices: list[Device]
    enrollments: list[Enrollment]


@dataclass(frozen=True, slots=True)
class OnrampQuote:
    id: str
    token: Token
    token_amount: Decimal
    fiat_amount: Decimal  # fee included
    fee: Decimal
    currency: str
    price: Decimal
    expires_at: datetime

    @classmethod
    def from_wire(cls, wire: Wire) -> OnrampQuote:
        return cls(
            id=wire["id"],
            token=Token.from_wire(wire["token"]),
            token_amount=Decimal(wire["tokenAmount"]),
            fiat_amount=Decimal(wire["fiatAmount"]),
            fee=Decimal(wire["fee"]),
            currency=wire["currency"],
            price=Decimal(wire["price"]),
            expires_at=datetime.fromisoformat(wire["expiresAt"]),
        )


@dataclass(frozen=True, slots=True)
class DeliveryTransaction:
    id: str
    status: str
    hash: str | None


@dataclass(frozen=True, slots=True)
class OnrampPayment:
    id: str
    purpose: str  # PURCHASE ENROLLMENT_FEE
    # REQUIRES_PAYMENT PAYMENT_FAILED CANCELED PAID DELIVERING DELIVERED DELIVERY_FAILED REFUNDED
    # DISPUTED REFUND_FAILED (not delivered, and the refund to the card failed: the utility
    # returns the money another way)
    status: str
    token: Token
    token_amount: Decimal
    fiat_amount: Decimal
    fee: Decimal
    currency: str
    payment_intent_id: str
    client_secret: str | None  # only in createOnrampPayment's answer
    delivery_transaction: DeliveryTransaction | None
    refunded_amount: Decimal
    refund_failed_amount: Decimal  # refunded, then the card refused it: never reached the card
    disputed: bool
    clawback_required: bool
    error: str | None
    enrollment_id: str | None
    created_at: datetime
    paid_at: datetime | None
    delivered_at: datetime | None

    @classmethod
    def from_wire(cls, wire: Wire) -> OnrampPayment:
        delivery = wire["deliveryTransaction"]
        return cls(
            id=wire["id"],
            purpose=wire["purpose"],
            status=wire["status"],
            token=Token.from_wire(wire["token"]),
            token_amount=Decimal(wire["tokenAmount"]),
            fiat_amount=Decimal(wire["fiatAmount"]),
            fee=Decimal(wire["fee"]),
            currency=wire["currency"],
            payment_intent_id=wire["paymentIntentId"],
            client_secret=wire["clientSecret"],
            delivery_transaction=DeliveryTransaction(
                id=delivery["id"], status=delivery["status"], hash=delivery["hash"]
            )
            if delivery
            else None,
            refunded_amount=Decimal(wire["refundedAmount"]),
            refund_failed_amount=Decimal(wire["refundFailedAmount"]),
            disputed=wire["disputed"],
            clawback_required=wire["clawbackRequired"],
            error=wire["error"],
            enrollment_id=wire["enrollmentId"],
            created_at=datetime.fromisoformat(wire["createdAt"]),
            paid_at=_datetime(wire["paidAt"]),
            delivered_at=_datetime(wire["deliveredAt"]),
        )
