"""Fixtures the API tests share."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what each test gives: no OVPP_* variable of the machine running the tests."""
    for name in os.environ:
        if name.startswith("OVPP_"):
            monkeypatch.delenv(name)
