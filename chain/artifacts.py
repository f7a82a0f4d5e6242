"""The committed contract build (``contracts/build/*.json``): ABI and bytecode, no compiler."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from core.settings import REPO_ROOT

BUILD_DIR = REPO_ROOT / "contracts" / "build"


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def artifact(name: str) -> Artifact:
    data = json.loads((BUILD_DIR / f"{name}.json").read_text())
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])
