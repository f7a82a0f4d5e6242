"""The published client contract: ``clients/schema.graphql`` is what the server serves, and
every operation in ``clients/operations`` is valid against it."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
)

from api.sdl import PUBLISHED_SCHEMA, schema_sdl
from core.settings import load_settings

OPERATIONS = PUBLISHED_SCHEMA.parent / "operations"
OPERATION_FILES = sorted(OPERATIONS.glob("*.graphql"))
WEB_SCREENS = PUBLISHED_SCHEMA.parent / "web" / "screens.js"
TYPES_GENERATOR = PUBLISHED_SCHEMA.parent / "python" / "generate_types.py"
# A card payment's statuses that move on their own soon after the card is charged: the web app's
# buy screen polls through these and stops at every other one.
PAYMENT_STATUSES_IN_PROGRESS = {"REQUIRES_PAYMENT", "PAID", "DELIVERING"}
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


def test_the_web_app_stops_polling_a_card_payment_at_every_other_status(
    published_schema: GraphQLSchema,
) -> None:
    """A status the buy screen does not know (REFUND_FAILED once was one) is polled forever."""
    declared = re.search(
        r"const FINAL_PAYMENT_STATUSES = new Set\(\[([^\]]*)\]\)",
        WEB_SCREENS.read_text(encoding="utf-8"),
    )
    assert declared is not None, "clients/web/screens.js no longer declares FINAL_PAYMENT_STATUSES"
    final = set(re.findall(r"'([A-Z_]+)'", declared.group(1)))
    statuses = published_schema.type_map["OnrampPaymentStatus"]
    assert isinstance(statuses, GraphQLEnumType)
    assert final == set(statuses.values) - PAYMENT_STATUSES_IN_PROGRESS


def test_python_client_types_are_generated() -> None:
    """``ovpp_client/types.py`` is what its generator makes of the schema and the operations."""
    spec = importlib.util.spec_from_file_location("generate_types", TYPES_GENERATOR)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = generator  # its dataclasses look their module up there
    spec.loader.exec_module(generator)
    assert generator.TARGET.read_text(encoding="utf-8") == generator.generate(), (
        "ovpp_client/types.py is stale: run `python clients/python/generate_types.py`"
    )
