"""Numbered progress lines for a slow start (``serve``): ``[2/5] database: migrating …``."""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    def __init__(self, total: int, echo: Callable[[str], None] = print) -> None:
        self.total, self.step, self.echo = total, 0, echo
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        self.step += 1
        self.echo(f"[{self.step}/{self.total}] {message}")

    def detail(self, message: str) -> None:
        self.echo(f"      {message}")

    def done(self) -> None:
        self.echo(f"ready in {time.monotonic() - self.started:.1f} s")
