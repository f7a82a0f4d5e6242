"""One child process (anvil, localstripe, the development OpenID Provider) started, waited for
and stopped the same way, so ``serve`` and the tests never leave one running."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from devsupport.signals import stop_requests_held

logger = logging.getLogger(__name__)


class ChildProcess:
    """At most one running process per instance. :meth:`stop` is idempotent, also after a
    failed start. ``stop_signal`` goes to the child's whole process group when it was started
    in a session of its own (``start_new_session=True``), else to the child alone; the child
    is killed if it has not exited ``grace_seconds`` later."""

    def __init__(
        self, name: str, *, stop_signal: int = signal.SIGTERM, grace_seconds: float = 10.0
    ) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.grace_seconds = grace_seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._own_session = False

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self, command: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``command`` (``popen``: ``subprocess.Popen``'s keyword arguments)."""
        if self.is_running:
            raise RuntimeError(f"{self.name} is already started; call stop() first")
        self._own_session = bool(popen.get("start_new_session"))
        with stop_requests_held():  # spawned and recorded, or neither
            self.process = subprocess.Popen(list(command), **popen)
        return self.process

    def wait_until(
        self, answers: Callable[[], bool], *, where: str, log_file: Path | None, timeout: float
    ) -> None:
        """Poll ``answers`` until it holds; raise RuntimeError if the child exits first or
        ``timeout`` seconds pass (the child stopped then)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode}; see {log_file}"
                )
            if answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {where} within {timeout:.0f} s")

    def stop(self) -> subprocess.Popen[bytes] | None:
        """Stop the child (see the class); returns the process it had, exited, if any."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return process
        logger.info("stopping %s (pid %d)", self.name, process.pid)
        self._signal(process, self.stop_signal)
        try:
            process.wait(timeout=self.grace_seconds)
        except subprocess.TimeoutExpired:
            logger.warning("%s (pid %d) did not stop; killing it", self.name, process.pid)
            self._signal(process, signal.SIGKILL)
            process.wait()
        return process

    def _signal(self, process: subprocess.Popen[bytes], signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self._own_session:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
