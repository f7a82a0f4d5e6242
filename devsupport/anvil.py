"""A local anvil node as a child process (``serve`` on the local profile, and the tests).

Always ``--hardfork shanghai``: Odyssey has neither Cancun's opcodes nor Prague's EIP-7702,
and nothing here may come to rely on them.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from pathlib import Path

import httpx

from core.settings import REPO_ROOT
from devsupport.child_process import ChildProcess

logger = logging.getLogger(__name__)

ANVIL_BINARY = REPO_ROOT / "node_modules" / ".bin" / "anvil"


class LocalChain:
    def __init__(
        self,
        *,
        port: int,
        state_file: Path | None = None,
        log_file: Path | None = None,
        chain_id: int = 31337,
        block_time: float | None = None,
    ) -> None:
        self.port = port
        self.state_file = state_file
        self.log_file = log_file
        self.chain_id = chain_id
        self.block_time = block_time
        self._child = ChildProcess("anvil", stop_signal=signal.SIGINT)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        if not ANVIL_BINARY.exists():
            raise RuntimeError(f"{ANVIL_BINARY} is missing: run `make install` (npm pieces)")
        command = [
            str(ANVIL_BINARY),
            "--hardfork", "shanghai",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
        ]  # fmt: skip
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            # --state loads the file if present and dumps on exit; the interval bounds what a
            # crash can lose.
            command += ["--state", str(self.state_file), "--state-interval", "5"]
        if self.block_time is not None:
            command += ["--block-time", str(self.block_time)]
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self._child.spawn(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        self._child.wait_until(
            lambda: rpc_answers(self.rpc_url),
            where=self.rpc_url,
            log_file=self.log_file,
            timeout=timeout,
        )

    def stop(self) -> None:
        """SIGINT first so anvil dumps its state; kill only if it does not exit."""
        self._child.stop()

    @property
    def pid(self) -> int | None:
        """The running node's process id (``None`` when stopped)."""
        return self._child.process.pid if self._child.process is not None else None

    def __enter__(self) -> LocalChain:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def rpc_answers(rpc_url: str) -> bool:
    try:
        response = httpx.post(
            rpc_url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=1,
        )
        return response.status_code == 200 and "result" in response.json()
    except (httpx.HTTPError, ValueError):
        return False
