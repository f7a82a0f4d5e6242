"""Run the development OpenID Provider (``devsupport/oidc-provider.mjs``) as a child process.

DEVELOPMENT ONLY: the provider behind this class logs in any email address without a
password. It exists so the product can run offline and so tests can drive a real
authorization-code + PKCE flow (see :mod:`devsupport.oidc_login`).

Invariants:

* the provider listens on ``127.0.0.1:<port>`` and its issuer is ``http://127.0.0.1:<port>``;
* at most one node process per :class:`DevOpenIDProvider` instance; after :meth:`start`
  returns, the process has printed its ready line and accepts connections;
* the signing keys live in ``keys_file`` (created by the provider with mode 0600 when missing),
  so a restart with the same file keeps the same ``kid`` and earlier tokens stay verifiable;
* the node process writes only the ready line to stdout; its diagnostics go to ``log_file``
  (or to a private temporary file), whose tail is included in startup errors.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from core.defaults import DEV_OIDC_CLIENT_ID
from core.settings import REPO_ROOT
from devsupport.child_process import ChildProcess

logger = logging.getLogger(__name__)

PROVIDER_SCRIPT_PATH: Path = Path(__file__).resolve().with_name("oidc-provider.mjs")
"""Node ESM script that runs npm ``oidc-provider``; resolves it from ``node_modules`` here."""

DEFAULT_AUDIENCE = "https://wallet.ovpp.local"
DEFAULT_REDIRECT_URIS: tuple[str, ...] = (
    "http://127.0.0.1:8000/app/callback",
    "http://127.0.0.1/callback",
)
DEFAULT_ACCESS_TOKEN_TTL_SECONDS = 3600

STOP_GRACE_PERIOD_SECONDS = 5.0
"""How long :meth:`DevOpenIDProvider.stop` waits after SIGTERM before it kills the process."""

LOG_TAIL_CHARACTERS = 4000
"""How much of the provider's log an error message quotes."""


class DevOpenIDProvider:
    """Manage one development OpenID Provider node process.

    Use as a context manager (``with DevOpenIDProvider(port=..., keys_file=...) as op:``)
    or call :meth:`start` and :meth:`stop` explicitly. :meth:`stop` is idempotent and also
    safe when :meth:`start` failed.
    """

    def __init__(
        self,
        *,
        port: int,
        keys_file: str | os.PathLike[str],
        audience: str = DEFAULT_AUDIENCE,
        client_id: str = DEV_OIDC_CLIENT_ID,
        redirect_uris: Sequence[str] = DEFAULT_REDIRECT_URIS,
        log_file: str | os.PathLike[str] | None = None,
        access_token_ttl: int = DEFAULT_ACCESS_TOKEN_TTL_SECONDS,
    ) -> None:
        """Remember the settings; nothing is started until :meth:`start`.

        :param port: TCP port on 127.0.0.1 (must be free when :meth:`start` runs).
        :param keys_file: JWKS file with the private RSA signing keys (created if missing).
        :param audience: resource indicator of the wallet API; the ``aud`` of access tokens.
        :param client_id: id of the single public client.
        :param redirect_uris: the client's registered redirect URIs (exact match).
        :param log_file: file the provider's stderr is appended to; a private temporary
            file is used when ``None``.
        :param access_token_ttl: access token lifetime in seconds.
        """
        if not 0 < port < 65536:
            raise ValueError(f"port must be 1-65535, got {port}")
        if access_token_ttl <= 0:
            raise ValueError(f"access_token_ttl must be positive, got {access_token_ttl}")
        if not redirect_uris:
            raise ValueError("at least one redirect URI is required")
        self._port = port
        self._keys_file_path = Path(keys_file)
        self._audience = audience
        self._client_id = client_id
        self._redirect_uris: tuple[str, ...] = tuple(redirect_uris)
        self._configured_log_file_path = Path(log_file) if log_file is not None else None
        self._access_token_ttl_seconds = access_token_ttl

        self._child = ChildProcess("dev OpenID Provider", grace_seconds=STOP_GRACE_PERIOD_SECONDS)
        self._log_file_path: Path | None = None
        self._log_file_handle: IO[bytes] | None = None
        self._owns_temporary_log_file = False
        self._stdout_reader_thread: threading.Thread | None = None
        self._ready_event = threading.Event()
        self._announced_issuer: str | None = None

    # ----------------------------------------------------------------------------- properties

    @property
    def issuer(self) -> str:
        """The issuer URL (``iss`` of tokens, base of discovery): ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        """TCP port the provider listens on (127.0.0.1 only)."""
        return self._port

    @property
    def audience(self) -> str:
        """Resource indicator of the wallet API, which is the ``aud`` of every access token."""
        return self._audience

    @property
    def client_id(self) -> str:
        """Id of the provider's single public client."""
        return self._client_id

    @property
    def redirect_uris(self) -> tuple[str, ...]:
        """Redirect URIs registered for the client."""
        return self._redirect_uris

    @property
    def keys_file(self) -> Path:
        """JWKS file holding the private signing keys."""
        return self._keys_file_path

    @property
    def is_running(self) -> bool:
        """True while the node process started by :meth:`start` is alive."""
        return self._child.is_running

    # ------------------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 20.0) -> None:
        """Spawn the provider and block until it prints its ready line.

        :raises RuntimeError: when ``node`` or the script is missing, the process exits
            before it is ready, it announces an unexpected issuer, or ``timeout`` seconds
            pass; the message includes the tail of the provider's log. The process is
            stopped before the error is raised.
        """
        if self._child.is_running:
            raise RuntimeError("DevOpenIDProvider is already started; call stop() first")
        node_executable_path = shutil.which("node")
        if node_executable_path is None:
            raise RuntimeError("cannot start the dev OpenID Provider: `node` is not on PATH")
        if not PROVIDER_SCRIPT_PATH.is_file():
            raise RuntimeError(f"dev OpenID Provider script not found: {PROVIDER_SCRIPT_PATH}")

        self._open_log_file()
        command = [
            node_executable_path,
            str(PROVIDER_SCRIPT_PATH),
            "--port",
            str(self._port),
            "--issuer",
            self.issuer,
            "--audience",
            self._audience,
            "--client-id",
            self._client_id,
            "--keys-file",
            str(self._keys_file_path.resolve()),
            "--access-token-ttl",
            str(self._access_token_ttl_seconds),
        ]
        for redirect_uri in self._redirect_uris:
            command += ["--redirect-uri", redirect_uri]

        logger.info("starting dev OpenID Provider on %s", self.issuer)
        self._ready_event.clear()
        self._announced_issuer = None
        process = self._child.spawn(
            command,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log_file_handle,
        )
        self._stdout_reader_thread = threading.Thread(
            target=self._read_provider_stdout,
            args=(process,),
            name=f"dev-oidc-stdout-{self._port}",
            daemon=True,
        )
        self._stdout_reader_thread.start()

        try:
            self._wait_until_ready(timeout_seconds=timeout)
        except BaseException:
            self.stop()
            raise
        logger.info("dev OpenID Provider ready at %s (pid %d)", self.issuer, process.pid)

    def stop(self) -> None:
        """Stop the provider: SIGTERM, then SIGKILL after 5 seconds. Idempotent."""
        process = self._child.stop()
        if process is not None:
            if self._stdout_reader_thread is not None:
                self._stdout_reader_thread.join(timeout=STOP_GRACE_PERIOD_SECONDS)
            if process.stdout is not None:
                process.stdout.close()
        self._stdout_reader_thread = None
        self._close_log_file()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exception_type: type[BaseException] | None,
        exception: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -------------------------------------------------------------------------------- helpers

    def _wait_until_ready(self, *, timeout_seconds: float) -> None:
        """Block until the ready line arrives; raise RuntimeError on exit or timeout."""
        process = self._child.process
        assert process is not None
        deadline = time.monotonic() + timeout_seconds
        while not self._ready_event.wait(timeout=0.05):
            exit_code = process.poll()
            if exit_code is not None:
                # The ready line may have raced with the exit; give the reader a moment.
                if self._ready_event.wait(timeout=0.2):
                    break
                raise RuntimeError(
                    f"dev OpenID Provider exited with code {exit_code} before it was ready"
                    f"{self._log_tail_for_error()}"
                )
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"dev OpenID Provider was not ready after {timeout_seconds:g} s"
                    f"{self._log_tail_for_error()}"
                )
        if self._announced_issuer != self.issuer:
            raise RuntimeError(
                f"dev OpenID Provider announced issuer {self._announced_issuer!r}, "
                f"expected {self.issuer!r}{self._log_tail_for_error()}"
            )

    def _read_provider_stdout(self, process: subprocess.Popen[bytes]) -> None:
        """Reader thread: find the ``{"ready":true,...}`` line, log anything else."""
        assert process.stdout is not None
        try:
            for raw_line in process.stdout:
                line = raw_line.decode("utf-8", errors="replace").strip()
                if not line:
                    continue
                if not self._ready_event.is_set():
                    try:
                        message = json.loads(line)
                    except ValueError:
                        message = None
                    if isinstance(message, dict) and message.get("ready") is True:
                        self._announced_issuer = str(message.get("issuer"))
                        self._ready_event.set()
                        continue
                logger.debug("dev OpenID Provider stdout: %s", line)
        except (OSError, ValueError):
            # stdout closed by stop() while reading; nothing left to do.
            return

    def _open_log_file(self) -> None:
        """Open the file that receives the provider's stderr (append mode)."""
        if self._configured_log_file_path is not None:
            self._configured_log_file_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file_path = self._configured_log_file_path
            self._log_file_handle = self._log_file_path.open("ab")
            self._owns_temporary_log_file = False
        else:
            file_descriptor, temporary_path = tempfile.mkstemp(
                prefix=f"dev-oidc-{self._port}-", suffix=".log"
            )
            self._log_file_path = Path(temporary_path)
            self._log_file_handle = os.fdopen(file_descriptor, "ab")
            self._owns_temporary_log_file = True

    def _close_log_file(self) -> None:
        if self._log_file_handle is not None:
            self._log_file_handle.close()
            self._log_file_handle = None
        if self._owns_temporary_log_file and self._log_file_path is not None:
            self._log_file_path.unlink(missing_ok=True)
        self._log_file_path = None
        self._owns_temporary_log_file = False

    def _log_tail_for_error(self) -> str:
        """The end of the provider's log, formatted to append to an error message."""
        if self._log_file_path is None:
            return ""
        if self._log_file_handle is not None:
            self._log_file_handle.flush()
        try:
            log_text = self._log_file_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = log_text[-LOG_TAIL_CHARACTERS:].strip()
        if not tail:
            return f" (log {self._log_file_path} is empty)"
        return f"\n--- tail of {self._log_file_path} ---\n{tail}"
