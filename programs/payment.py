"""How an enrollment's relayed job pays: the OVPP approval of the connection fee, the gas
either as an OVPP fee in the same batch or charged to the utility's sponsorship, and the OVPP
a payer can still spend."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from chain.calls import Call
from chain.erc20 import erc20_approve_data
from chain.tokens import TokenKind
from programs.deps import ProgramServices
from programs.registry import ovpp_token
from registry_client.onchain import APPROVE_CALL_GAS
from relayer import sponsorship
from relayer.errors import SponsorRefused
from relayer.jobs import Display, GasPayment, required_nonces
from relayer.pricing import GasQuote, fee_in_token
from relayer.service import current_gas_price, spendable_balances
from wallet.models import Wallet

ENROLL_TX_GAS = 800_000
UNENROLL_TX_GAS = 300_000


async def utility_sponsors_gas(session: AsyncSession, tenant_id: str) -> bool:
    """Whether the utility's active sponsorship pays its customers' gas."""
    return sponsorship.pays_customers_gas(await sponsorship.sponsor_of_tenant(session, tenant_id))


async def available_ovpp(session: AsyncSession, services: ProgramServices, wallet: Wallet) -> int:
    """The wallet's OVPP on chain less what its not-yet-mined jobs will take."""
    spendable = await spendable_balances(session, chain=services.chain, wallet=wallet)
    return spendable.get(TokenKind.OVPP.value, 0)


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


def approve_call(services: ProgramServices, *, spender: str, amount: int) -> Call:
    return Call(
        target=ovpp_token(services.chain).address or "",
        data=erc20_approve_data(spender, amount),
        gas=APPROVE_CALL_GAS,
    )


def ovpp_display(services: ProgramServices, *, to_address: str, amount: int) -> Display:
    """How an enrollment's job shows in the customer's history: OVPP to the registry."""
    return Display(
        token=TokenKind.OVPP.value,
        token_address=ovpp_token(services.chain).address or "",
        to_address=to_address,
        amount=amount,
    )


async def gas_payment(
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
    """The OVPP gas fee, or the sponsor's charge: the sponsor locked (after the wallet) and its
    budget checked for this customer."""
    if not gas_sponsored:
        return GasPayment(fee_token=ovpp_token(services.chain), fee_amount=gas_fee)
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


_STAND_IN = Call(target="", data=b"", gas=0)


def job_shape(
    services: ProgramServices, *, call_count: int, gas_sponsored: bool
) -> tuple[list[Call], GasPayment]:
    """Stand-ins with the shape of a job whose calls are not known yet (they need reads made
    under the wallet's lock): ``call_count`` calls, then an OVPP fee unless gas is sponsored.
    Enough to reserve the job's nonces, which locks the wallet."""
    if gas_sponsored:
        return [_STAND_IN] * call_count, GasPayment()
    return [_STAND_IN] * call_count, GasPayment(fee_token=ovpp_token(services.chain), fee_amount=1)


def same_shape(
    calls: list[Call], payment: GasPayment, *, shape: tuple[list[Call], GasPayment]
) -> bool:
    """Whether the job's calls and payment take as many nonces as were reserved for ``shape``."""
    return required_nonces(calls, payment) == required_nonces(*shape)
