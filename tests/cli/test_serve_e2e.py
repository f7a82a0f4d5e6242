"""The walking skeleton, accepted the way a developer meets it: `make run` with nothing
configured, a token from `ovpp-wallet dev-token`, a GraphQL query over real HTTP, Ctrl-C, and a
second start on the same data directory.

Everything runs as real subprocesses of the installed ``ovpp-wallet`` console script; each
test gets its own data directory and free ports, and never inherits the caller's ``OVPP_*``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from chain.address_book import AddressBook
from chain.anvil import rpc_answers
from tests.support.ports import free_port

CLI = Path(sys.executable).with_name("ovpp-wallet")
DEMO_EMAIL = "alice@example.com"
READY_TIMEOUT_SECONDS = 90
STOP_TIMEOUT_SECONDS = 15
PROGRESS_STEPS = ("chain:", "database:", "contracts:", "sign-in:", "demo data:")

VIEWER_WALLET = """
query {
  viewer { wallet { address balances { token { symbol address } amount raw } } }
}
"""


@dataclass(frozen=True)
class Stack:
    """Where one isolated `serve` keeps its data and listens."""

    data_dir: Path
    logs_dir: Path
    api_port: int
    anvil_port: int
    oidc_port: int
    stripe_port: int

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment without any OVPP_* setting, plus this stack's own."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("OVPP_")}
        env.update(
            PYTHONUNBUFFERED="1",  # progress lines reach the log file as they are printed
            OVPP_DATA_DIR=str(self.data_dir),
            OVPP_PORT=str(self.api_port),
            OVPP_ANVIL_PORT=str(self.anvil_port),
            OVPP_DEV_OIDC_PORT=str(self.oidc_port),
            OVPP_LOCALSTRIPE_PORT=str(self.stripe_port),
        )
        return env

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.oidc_port}"


@dataclass
class RunningServe:
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    data_dir: Path

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def diagnostics(self) -> str:
        """serve's output and the tails of its children's logs, for a failure message."""
        sections = [f"--- stdout ---\n{self.output()}"]
        for log in (self.stderr_path, self.data_dir / "anvil.log", self.data_dir / "dev-oidc.log"):
            if log.exists():
                sections.append(
                    f"--- {log.name} (tail) ---\n{log.read_text(errors='replace')[-3000:]}"
                )
        return "\n".join(sections)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    return Stack(
        data_dir=tmp_path / "data",
        logs_dir=logs_dir,
        api_port=free_port(),
        anvil_port=free_port(),
        oidc_port=free_port(),
        stripe_port=free_port(),
    )


def test_dev_token_without_serve_exits_with_a_hint(stack: Stack) -> None:
    result = _cli(stack, "dev-token", "--email", DEMO_EMAIL)

    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert stack.issuer in result.stderr
    assert "make run" in result.stderr


def test_serve_from_nothing_then_restart_keeps_the_funded_demo_wallet(stack: Stack) -> None:
    with _serve(stack, run_name="first") as first:
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

    with _serve(stack, run_name="second") as second:
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


def _cli(stack: Stack, *arguments: str) -> subprocess.CompletedProcess[str]:
    # cwd outside the repository: a developer's own .env there must not leak into the test.
    return subprocess.run(
        [str(CLI), *arguments],
        env=stack.env,
        cwd=stack.logs_dir,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def _serve(stack: Stack, *, run_name: str) -> Iterator[RunningServe]:
    """`serve` in its own session, ready (``/readyz`` is 200) when the block starts.

    Whatever happens in the block, nothing it started is left running afterwards: the
    session is killed, and so is any process (anvil, the provider) naming the data dir.
    """
    stdout_path = stack.logs_dir / f"serve-{run_name}.out"
    stderr_path = stack.logs_dir / f"serve-{run_name}.err"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [str(CLI), "serve"],
            env=stack.env,
            cwd=stack.logs_dir,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    running = RunningServe(
        process=process, stdout_path=stdout_path, stderr_path=stderr_path, data_dir=stack.data_dir
    )
    try:
        _wait_until_ready(stack, running)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in _pids_naming(stack.data_dir):
            with contextlib.suppress(ProcessLookupError):
                group = os.getpgid(pid)
                if group == os.getpgrp():  # never the group pytest itself runs in
                    os.kill(pid, signal.SIGKILL)
                else:
                    os.killpg(group, signal.SIGKILL)


def _wait_until_ready(stack: Stack, running: RunningServe) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            pytest.fail(
                f"serve exited with code {running.process.returncode} before it was ready\n"
                + running.diagnostics()
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{stack.api_url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(
        f"/readyz did not answer 200 within {READY_TIMEOUT_SECONDS} s\n" + running.diagnostics()
    )


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
    token_result = _cli(stack, "dev-token", "--email", DEMO_EMAIL)
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
    shown = _cli(stack, "balances", "--token", token)
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
    assert _pids_naming(stack.data_dir) == [], "anvil or the provider outlived serve"
    assert not rpc_answers(f"http://127.0.0.1:{stack.anvil_port}")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.issuer}/.well-known/openid-configuration", timeout=2)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack.api_url}/healthz", timeout=2)


def _pids_naming(data_dir: Path) -> list[int]:
    """Live processes whose command line names ``data_dir`` (anvil's --state, the provider's
    --keys-file): what this test's serve started, and nothing anyone else runs."""
    needle = str(data_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids
