"""The installed ``ovpp-wallet`` console script, run as a subprocess the way an operator runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).with_name("ovpp-wallet")


def ovpp_wallet(
    env: dict[str, str], *arguments: str, cwd: Path | str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``ovpp-wallet ARGUMENTS`` in ``env`` only, from ``cwd`` (default: the data dir).

    cwd is outside the repository: a developer's own .env there must not leak into the test."""
    return subprocess.run(
        [str(CLI), *arguments],
        env=env,
        cwd=cwd if cwd is not None else env["OVPP_DATA_DIR"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
