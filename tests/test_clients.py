"""The published client contract: ``clients/schema.graphql`` is what the server serves, and
every operation in ``clients/operations`` is valid against it."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, build_schema, parse, validate

from api.sdl import PUBLISHED_SCHEMA, schema_sdl
from core.settings import load_settings

OPERATIONS = PUBLISHED_SCHEMA.parent / "operations"
OPERATION_FILES = sorted(OPERATIONS.glob("*.graphql"))
# The operations the apps rely on (the contract): each must keep existing.
REQUIRED_OPERATIONS = {
    "Viewer",
    "Chain",
    "Tokens",
    "QuoteTransfer",
    "Transfer",
    "Transaction",
    "Transactions",
    "TransactionUpdates",
    "DeviceModels",
    "Programs",
    "AddDevice",
    "CheckEnrollment",
    "Enroll",
    "Unenroll",
    "ViewerEnrollments",
    "QuoteOnramp",
    "CreateOnrampPayment",
    "OnrampPayments",
}


@pytest.fixture(scope="module")
def published_schema() -> GraphQLSchema:
    return build_schema(PUBLISHED_SCHEMA.read_text(encoding="utf-8"))


def test_schema_is_current() -> None:
    served = schema_sdl(load_settings(environment="development"))
    published = PUBLISHED_SCHEMA.read_text(encoding="utf-8") if PUBLISHED_SCHEMA.exists() else ""
    assert published == served, (
        "clients/schema.graphql is stale: run `.venv/bin/ovpp-wallet schema --write`"
    )


def test_every_required_operation_has_its_file() -> None:
    assert {path.stem for path in OPERATION_FILES} >= REQUIRED_OPERATIONS


@pytest.mark.parametrize("path", OPERATION_FILES, ids=lambda path: path.stem)
def test_operation_is_valid_against_the_schema(path: Path, published_schema: GraphQLSchema) -> None:
    document = parse(path.read_text(encoding="utf-8"))
    operations = [
        node for node in document.definitions if isinstance(node, OperationDefinitionNode)
    ]
    assert [operation.name.value for operation in operations if operation.name] == [path.stem], (
        "one named operation per file, named like the file"
    )
    errors = validate(published_schema, document)
    assert not errors, [error.message for error in errors]
