"""``ovpp-wallet sponsor credit``: the operator's way to add sponsorship funds for a payment
received outside the chain. The funding records who credited it and the payment's reference
(credited once), and the utility's administrator sees it in ``utilityAdmin.sponsorBudget``."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest
from sqlalchemy import select

from relayer.models import SponsorFunding
from tests.support.graphql import gql
from tests.support.issuer import TestIssuer
from tests.support.own_stack import OwnStack

pytestmark = pytest.mark.parametrize("own_stack", ["sqlite", "postgresql"], indirect=True)

BUDGET = """
query { utilityAdmin { sponsorBudget { funds remaining
  fundings { source status credit operator reference token { symbol } transactionId } } } }
"""


async def credit(stack: OwnStack, *arguments: str) -> tuple[int, str]:
    """``ovpp-wallet sponsor credit <arguments>`` against the stack's database."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "sponsor",
        "credit",
        *arguments,
        env=stack.worker_env(rpc_url=stack.settings.resolved_rpc_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    return int(process.returncode or 0), output.decode()


async def test_an_operators_credit_records_who_and_the_payment_and_shows_to_the_admin(
    own_stack: OwnStack, test_issuer: TestIssuer
) -> None:
    stack = own_stack
    admin = test_issuer.mint(sub=f"admin-{uuid.uuid4().hex[:6]}", scope="utility:admin")
    reference = f"SEPA-{uuid.uuid4().hex[:8]}"
    code, output = await credit(
        stack,
        "--utility",
        "test-utility",
        "--amount",
        "1.5",
        "--operator",
        "alice@operator.example",
        "--reference",
        reference,
    )
    assert code == 0, output
    assert "alice@operator.example" in output and reference in output

    body = await gql(stack.client, BUDGET, token=admin)
    assert "errors" not in body, body
    shown = body["data"]["utilityAdmin"]["sponsorBudget"]
    assert (shown["funds"], shown["remaining"]) == ("1.5", "1.5")
    assert shown["fundings"] == [
        {
            "source": "OPERATOR",
            "status": "CREDITED",
            "credit": "1.5",
            "operator": "alice@operator.example",
            "reference": reference,
            "token": None,
            "transactionId": None,
        }
    ]

    # One payment is credited once; a credit without its operator or reference is refused.
    code, output = await credit(
        stack,
        "--utility",
        "test-utility",
        "--amount",
        "1.5",
        "--operator",
        "bob",
        "--reference",
        reference,
    )
    assert code != 0 and "credited already" in output, output
    code, output = await credit(stack, "--utility", "test-utility", "--amount", "2")
    assert code != 0 and "--operator" in output, output
    body = await gql(stack.client, BUDGET, token=admin)
    assert body["data"]["utilityAdmin"]["sponsorBudget"]["funds"] == "1.5"
    async with stack.services.db.session() as session:
        rows = (await session.execute(select(SponsorFunding))).scalars().all()
    assert [(row.operator, row.reference, row.amount_wei) for row in rows] == [
        ("alice@operator.example", reference, 15 * 10**17)
    ]
