"""An isolated ``ovpp-wallet serve`` as a developer runs it (its own data dir and free ports,
none of the caller's ``OVPP_*``), ready before a test uses it and killed whole afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.cli import CLI
from tests.support.ports import free_port

READY_TIMEOUT_SECONDS = 90


@dataclass(frozen=True)
class Stack:
    """Where one isolated `serve` keeps its data and listens."""

    data_dir: Path
    logs_dir: Path
    api_port: int
    anvil_port: int
    oidc_port: int
    stripe_port: int
    program_server_port: int

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment without any OVPP_* setting, plus this stack's own."""
        env = {name: value for name, value in os.environ.items() if not name.startswith("OVPP_")}
        env.update(
            PYTHONUNBUFFERED="1",  # progress lines reach the log file as they are printed
            OVPP_ENVIRONMENT="development",  # as `make run` sets it
            OVPP_DATA_DIR=str(self.data_dir),
            OVPP_PORT=str(self.api_port),
            OVPP_ANVIL_PORT=str(self.anvil_port),
            OVPP_DEV_OIDC_PORT=str(self.oidc_port),
            OVPP_LOCALSTRIPE_PORT=str(self.stripe_port),
            OVPP_PROGRAM_SERVER_PORT=str(self.program_server_port),
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


def new_stack(root: Path) -> Stack:
    """A stack keeping its data and logs under ``root``, on free ports."""
    logs_dir = root / "logs"
    logs_dir.mkdir()
    return Stack(
        data_dir=root / "data",
        logs_dir=logs_dir,
        api_port=free_port(),
        anvil_port=free_port(),
        oidc_port=free_port(),
        stripe_port=free_port(),
        program_server_port=free_port(),
    )


@contextlib.contextmanager
def serving(stack: Stack, *, run_name: str) -> Iterator[RunningServe]:
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
        for pid in pids_naming(stack.data_dir):
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


def pids_naming(data_dir: Path) -> list[int]:
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
