"""A local Stripe API (PyPI ``localstripe``) as a child process: ``serve`` in development, and
the tests. DEVELOPMENT ONLY.

localstripe is a stateful fake of the Stripe API that also sends signed webhooks. Run through
this module rather than its own entry point it:
- listens on 127.0.0.1 only (its own entry point binds every interface);
- keeps its state in a file of ours (its own hard-codes ``/tmp/localstripe.pickle``, shared by
  every instance on the machine), so ``serve`` restarts with the payments it had;
- gets its webhook endpoint configured by ``configure_webhook`` (``POST /_config/webhooks/…``
  with url, secret and events; localstripe keeps that in memory only, so it is set on every
  start).
localstripe ignores Idempotency-Key and sends each event once, 1 s after it happens.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

WEBHOOK_NAME = "ovpp-wallet"


class LocalStripe:
    def __init__(self, *, port: int, state_file: Path, log_file: Path | None = None) -> None:
        self.port = port
        self.state_file = state_file
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        command = [
            sys.executable, "-m", "onramp.localstripe",
            "--port", str(self.port),
            "--state-file", str(self.state_file),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"localstripe exited with code {self._process.returncode}; see {self.log_file}"
                )
            if answers(self.url):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"localstripe did not answer on {self.url} within {timeout:.0f} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def answers(api_base: str) -> bool:
    """Something Stripe-like answers at ``api_base`` (an unauthenticated call gets 401)."""
    try:
        return httpx.get(f"{api_base}/v1/payment_intents", timeout=1).status_code in (200, 401)
    except httpx.HTTPError:
        return False


def configure_webhook(
    api_base: str,
    *,
    url: str,
    secret: str,
    name: str = WEBHOOK_NAME,
    events: list[str] | None = None,
) -> None:
    """Point localstripe's webhook ``name`` at ``url``, signed with ``secret``."""
    body: dict[str, object] = {"url": url, "secret": secret}
    if events is not None:
        body["events"] = events
    response = httpx.post(f"{api_base}/_config/webhooks/{name}", json=body, timeout=5)
    response.raise_for_status()


def _serve(port: int, state_file: Path) -> None:
    """The child process: localstripe's app with its state in ``state_file``, on loopback."""
    import pickle

    from aiohttp import web
    from localstripe import resources, server

    def load(store: resources.Store) -> None:
        with contextlib.suppress(FileNotFoundError, EOFError, pickle.UnpicklingError):
            with state_file.open("rb") as handle:
                saved = pickle.load(handle)  # noqa: S301 (our own file, written below)
            store.clear()
            dict.update(store, saved)

    def dump(store: resources.Store) -> None:
        temporary = state_file.with_suffix(".tmp")
        with temporary.open("wb") as handle:
            pickle.dump(dict(store), handle, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(state_file)

    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]
    resources.store.try_load_from_disk()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    web.run_app(server.app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="localstripe on 127.0.0.1 with its own state")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    arguments = parser.parse_args()
    _serve(arguments.port, arguments.state_file)
