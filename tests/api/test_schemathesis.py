"""Property-based fuzzing of the GraphQL schema with schemathesis, signed in.

The app runs as in production: uvicorn on a loopback port, its own lifespan building its own
services (database pool, chain client, JWKS cache) on the server's event loop. Schemathesis
reads the schema by introspection and sends generated documents, valid and invalid, to every
root field. Whatever it sends, the API must never fail on the server side: no 5xx, no error
that is neither typed (``extensions.code``) nor a parse/validation refusal, no Python
internals in a response, and no unexpected (masked or not) error logged at all.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.graphql.checks import GraphQLServerError

from api.app import create_app
from api.graphql.extensions import MASKED_MESSAGE
from api.graphql.schema import WalletSchema
from core.settings import Settings
from tests.support.issuer import TestIssuer
from tests.support.ports import free_port

# Per root field and per kind of document (valid, invalid, corrupted).
MAX_EXAMPLES_PER_OPERATION = 30

TRACEBACK_TEXT = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+")
EXCEPTION_NAME = re.compile(
    r"\b[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning)\b"
    r"|\b(?:KeyboardInterrupt|StopIteration|StopAsyncIteration|SystemExit)\b"
)


class LiveServer:
    """The whole app under uvicorn in a background thread, lifespan included."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings),
                host="127.0.0.1",
                port=self.port,
                lifespan="on",
                log_level="warning",
                access_log=False,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="live-api", daemon=True)

    def start(self, *, timeout_seconds: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API did not start; see the lifespan error logged above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start within {timeout_seconds} s")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)


@pytest.fixture(scope="module")
def live_api(settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(settings)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def graphql_api(live_api: LiveServer, test_issuer: TestIssuer) -> BaseSchema:
    """The schema as served, loaded by introspection, with one signed-in customer's token."""
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {test_issuer.mint()}"},
            "generation": {
                "max-examples": MAX_EXAMPLES_PER_OPERATION,
                # Derandomized: every run sends the same documents.
                "deterministic": True,
                # No example database: the run is reproducible on its own, and the working tree
                # stays clean.
                "database": "none",
            },
        }
    )
    return schemathesis.graphql.from_url(f"{live_api.base_url}/graphql", config=config)


def errors_are_typed_or_refusals(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every error is either expected and typed (a domain error's ``extensions.code``) or the
    server refusing the document before executing it (parse/validation: no ``path``). A masked
    error, or any untyped error raised while executing, is a bug. No response ever shows
    Python internals."""
    assert not TRACEBACK_TEXT.search(response.text), "a traceback in the response"
    schema_type_names = set(case.operation.schema.client_schema.type_map)
    exception_names = set(EXCEPTION_NAME.findall(response.text)) - schema_type_names
    assert not exception_names, f"Python exception names in the response: {exception_names}"
    body = response.json()
    assert isinstance(body, dict), body
    for error in body.get("errors") or []:
        message = error.get("message", "")
        assert message != MASKED_MESSAGE, "an unexpected error happened (masked)"
        code = (error.get("extensions") or {}).get("code")
        assert code != "UNAUTHENTICATED", "the run must be signed in"
        if code is None:
            assert "path" not in error, f"an untyped error while executing: {error}"
            assert error.get("locations") or message.startswith("Syntax Error"), error


@dataclass
class FuzzTally:
    """What one kind of fuzzing sent, so a run that tested nothing cannot pass."""

    documents: set[str] = field(default_factory=set)
    error_codes: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    executed: int = 0
    refused: int = 0

    def record(self, case: Case, response: Response) -> None:
        self.sent += 1
        self.documents.add(str(case.body))
        body = response.json()
        if body.get("errors"):
            self.refused += 1
            for error in body["errors"]:
                self.error_codes[(error.get("extensions") or {}).get("code", "(refusal)")] += 1
        elif body.get("data"):
            self.executed += 1


@st.composite
def corrupted_cases(draw: st.DrawFn, operation: APIOperation) -> Case:
    """A valid document with a few characters replaced by GraphQL punctuation and names: most
    no longer parse or validate, and the server must say so without failing."""
    case = draw(operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    document = str(case.body)
    start = draw(st.integers(min_value=0, max_value=len(document)))
    end = draw(st.integers(min_value=start, max_value=min(len(document), start + 8)))
    junk = draw(st.text(alphabet="{}()[]:$@!.,=\"'#_ \naZ09", max_size=6))
    case.body = document[:start] + junk + document[end:]
    return case


def not_a_server_error_but_typed_failures(
    ctx: CheckContext, response: Response, case: Case
) -> None:
    """schemathesis's ``not_a_server_error``, with this API's error contract.

    For GraphQL it also counts an error raised while executing (one with a ``path``) as a server
    failure, unless labelled with a code it knows (Apollo's). Here such errors are typed domain
    failures (``extensions.code``: NOT_FOUND, CHAIN_UNAVAILABLE, ...), expected outcomes. A 5xx,
    or an error without a code, still fails.
    """
    try:
        not_a_server_error(ctx, response, case)
    except GraphQLServerError as failure:
        if not all((error.get("extensions") or {}).get("code") for error in failure.errors):
            raise


CHECKS = [
    not_a_server_error_but_typed_failures,
    response_schema_conformance,
    errors_are_typed_or_refusals,
]


def fuzz(operation: APIOperation, cases: st.SearchStrategy[Case]) -> FuzzTally:
    """Send each generated case to the live API and run the checks on its response."""
    settings = operation.schema.config.get_hypothesis_settings(operation=operation)
    tally = FuzzTally()

    @hypothesis.settings(settings)
    @hypothesis.given(case=cases)
    def send_and_check(case: Case) -> None:
        unexpected_before = WalletSchema.unexpected_error_count
        response = case.call_and_validate(checks=CHECKS)
        tally.record(case, response)
        assert WalletSchema.unexpected_error_count == unexpected_before, (
            "the server logged an unexpected error (masked in the response)",
            response.text,
        )

    send_and_check()
    return tally


def test_no_generated_document_makes_the_api_fail(graphql_api: BaseSchema) -> None:
    operations = [result.ok() for result in graphql_api.get_all_operations()]
    assert {"Query.viewer", "Query.chain", "Query.tokens"} <= {op.label for op in operations}
    unexpected_before = WalletSchema.unexpected_error_count

    tallies: dict[str, dict[str, FuzzTally]] = {}
    for operation in operations:
        tallies[operation.label] = {
            "valid": fuzz(
                operation, operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
            ),
            "invalid": fuzz(
                operation, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
            ),
            "corrupted": fuzz(operation, corrupted_cases(operation)),
        }

    assert WalletSchema.unexpected_error_count == unexpected_before
    # Not vacuous: every kind was sent to every field, corrupted documents were refused, and
    # `viewer` (signed-in only) served the customer.
    for label, kinds in tallies.items():
        assert all(tally.sent for tally in kinds.values()), (label, kinds)
        assert kinds["corrupted"].refused, (label, kinds)
    viewer = tallies["Query.viewer"]["valid"]
    assert viewer.executed > 0, viewer
