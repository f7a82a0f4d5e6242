"""The operation documents of ``clients/operations``: the client sends exactly the documents the
tests validate against the published schema, never a query string of its own."""

from __future__ import annotations

from functools import cache
from pathlib import Path

# clients/python/ovpp_client/operations.py → clients/operations
OPERATIONS_DIRECTORY = Path(__file__).resolve().parents[2] / "operations"


@cache
def operation_document(name: str) -> str:
    """The document of the operation ``name`` (its file is ``<name>.graphql``)."""
    path = OPERATIONS_DIRECTORY / f"{name}.graphql"
    if not path.is_file():
        raise LookupError(f"no operation {name!r} in {OPERATIONS_DIRECTORY}")
    return path.read_text(encoding="utf-8")
