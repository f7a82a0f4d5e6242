"""``ovpp-wallet relayer`` (or another long-running command: ``indexer``) as real worker
processes, each in its own session so a test can SIGKILL it (and anything it started) without
touching pytest's own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

CLI = Path(sys.executable).with_name("ovpp-wallet")
STOP_TIMEOUT_SECONDS = 15


@dataclass
class RelayerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_line: str = "relayer worker running"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or committed."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> int:
        """SIGTERM, as a process supervisor would; returns the exit code."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def wait_until_running(self, timeout: float = 60.0) -> None:
        """Until the worker says it runs (start-up can take seconds on a loaded machine)."""
        deadline = time.monotonic() + timeout
        while self.started_line not in (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        ):
            if not self.running or time.monotonic() > deadline:
                raise AssertionError(f"worker {self.name} did not start\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, characters: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"--- {self.name} ({self.log_path}) ---\n{text[-characters:]}"


@dataclass
class RelayerProcesses:
    """Starts workers with one environment; on leaving the block every one still alive is
    killed, whatever happened inside it."""

    env: dict[str, str]
    logs_dir: Path
    started: list[RelayerProcess] = field(default_factory=list)
    command: str = "relayer"
    started_line: str = "relayer worker running"

    def start(self, name: str, *arguments: str) -> RelayerProcess:
        log_path = self.logs_dir / f"{self.command}-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(CLI), self.command, *arguments],
                env=self.env,
                cwd=self.logs_dir,  # outside the repository: no developer .env leaks in
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = RelayerProcess(
            name=name, process=process, log_path=log_path, started_line=self.started_line
        )
        self.started.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(worker.log_tail() for worker in self.started)

    def errors_logged(self) -> list[str]:
        """Log lines at ERROR or worse (a failed tick logs one, with its traceback)."""
        return [
            f"{worker.name}: {line}"
            for worker in self.started
            if worker.log_path.exists()
            for line in worker.log_path.read_text(errors="replace").splitlines()
            if " ERROR " in line or " CRITICAL " in line
        ]

    def __enter__(self) -> RelayerProcesses:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _error: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        for worker in self.started:
            worker.kill()


def environment_without_ovpp(**settings: str) -> dict[str, str]:
    """The caller's environment minus every OVPP_* variable, plus ``settings``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OVPP_")}
    env.update(settings)
    return env
