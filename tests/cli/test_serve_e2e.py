"""The walking skeleton, accepted the way a developer meets it: `make run` with nothing
configured, a token from `ovpp-wallet dev-token`, a GraphQL query over real HTTP, Ctrl-C, and a
second start on the same data directory.

Everything runs as real subprocesses of the installed ``ovpp-wallet`` console script; each
test gets its own data directory and free ports, and never inherits the caller's ``OVPP_*``.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from chain.address_book import AddressBook
from devsupport.anvil import rpc_answers
from tests.support.cli import ovpp_wallet
from tests.support.serve import RunningServe, Stack, new_stack, pids_naming, serving

DEMO_EMAIL = "alice@example.com"
STOP_TIMEOUT_SECONDS = 15
PROGRESS_STEPS = ("chain:", "database:", "contracts:", "sign-in:", "demo data:")

VIEWER_WALLET = """
query {
  viewer { wallet { address balances { token { symbol address } amount raw } } }
}
"""


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return new_stack(tmp_path)


def test_dev_token_without_serve_exits_with_a_hint(stack: Stack) -> None:
    result = ovpp_wallet(stack.env, "dev-token", "--email", DEMO_EMAIL, cwd=stack.logs_dir)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert stack.issuer in result.stderr
    assert "make run" in result.stderr


def test_serve_from_nothing_then_restart_keeps_the_funded_demo_wallet(stack: Stack) -> None:
    with serving(stack, run_name="first") as first:
        output = first.output()
        _assert_progress_steps(output)
        assert "address book written to" in output
        first_wallet = _demo_wallet(stack)
        _stop(first)
        _assert_nothing_left_running(stack)

    book = AddressBook.load(stack.data_dir / "addresses-31337.json")
    assert book is not None, "serve must write the address book into the data dir"
    balances = _balances_by_symbol(first_wallet)
    assert balances["OVPP"] == {"address": book.ovpp_token, "amount": "1000", "raw": str(10**21)}
    assert balances["USDC"] == {"address": book.stablecoin, "amount": "250", "raw": "250000000"}
    native = [entry for entry in first_wallet["balances"] if entry["token"]["address"] is None]
    assert [(entry["amount"], entry["raw"]) for entry in native] == [("0", "0")]

    with serving(stack, run_name="second") as second:
        output = second.output()
        _assert_progress_steps(output)
        assert "deployed already" in output
        assert "address book written to" not in output
        assert "minted" not in output, "the demo customer must be funded once, not per start"
        second_wallet = _demo_wallet(stack)
        _stop(second, signum=signal.SIGTERM)
        _assert_nothing_left_running(stack)

    assert second_wallet["address"] == first_wallet["address"]
    assert _balances_by_symbol(second_wallet) == balances


# ------------------------------------------------------------------------------------ helpers


def _stop(running: RunningServe, *, signum: signal.Signals = signal.SIGINT) -> None:
    """Ctrl-C as in a terminal, or SIGTERM as from a service manager (to serve's own pid, not
    its group); either way serve must stop what it started and exit cleanly."""
    running.process.send_signal(signum)
    try:
        returncode = running.process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve did not exit within {STOP_TIMEOUT_SECONDS} s of {signum.name}")
    assert returncode == 0, running.diagnostics()


def _demo_wallet(stack: Stack) -> dict[str, Any]:
    token_result = ovpp_wallet(stack.env, "dev-token", "--email", DEMO_EMAIL, cwd=stack.logs_dir)
    assert token_result.returncode == 0, token_result.stderr
    token = token_result.stdout.strip()
    response = httpx.post(
        f"{stack.api_url}/graphql",
        json={"query": VIEWER_WALLET},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    wallet = body["data"]["viewer"]["wallet"]
    # The CLI shows the same through the typed client (clients/python).
    shown = ovpp_wallet(stack.env, "balances", "--token", token, cwd=stack.logs_dir)
    assert shown.returncode == 0, shown.stderr
    assert wallet["address"] in shown.stdout
    for entry in wallet["balances"]:
        assert re.search(
            rf"{entry['token']['symbol']}\s+{re.escape(entry['amount'])}\b", shown.stdout
        )
    return wallet


def _balances_by_symbol(wallet: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        entry["token"]["symbol"]: {
            "address": entry["token"]["address"],
            "amount": entry["amount"],
            "raw": entry["raw"],
        }
        for entry in wallet["balances"]
    }


def _assert_progress_steps(output: str) -> None:
    steps = re.findall(r"^\[(\d)/5\] (.*)$", output, flags=re.MULTILINE)
    assert [int(number) for number, _ in steps] == [1, 2, 3, 4, 5], output
    for (_, message), expected_start in zip(steps, PROGRESS_STEPS, strict=True):
        assert message.startswith(expected_start), output


def _assert_nothing_left_running(stack: Stack) -> None:
    assert pids_naming(stack.data_dir) == [], "anvil or the provider outlived serve"
    assert not rpc_answers(f"http://127.0.0.1:{stack.anvil_port}")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.issuer}/.well-known/openid-configuration", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.api_url}/healthz", timeout=2)
