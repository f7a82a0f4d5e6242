"""Schema-wide behaviour: one unit of work per operation, at most one value-moving mutation
per operation, and error masking with logging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

from graphql import GraphQLError, ValidationRule
from graphql.language import (
    SKIP,
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VisitorAction,
)
from strawberry.extensions import SchemaExtension

from core.errors import ConfigurationError, DomainError

logger = logging.getLogger("api.graphql")

MASKED_MESSAGE = "Unexpected error. It has been logged; quote the request id to support."


def is_expected(error: GraphQLError) -> bool:
    """Parse/validation errors and domain errors reach clients as they are; anything else is a
    bug or an outage and is masked. A ``ConfigurationError`` is the operator's, not the
    client's: its message names settings and key ids, so it is masked (and logged) too."""
    original = error.original_error
    if isinstance(original, ConfigurationError):
        return False
    return original is None or isinstance(original, DomainError | GraphQLError)


def should_mask(error: GraphQLError) -> bool:
    return not is_expected(error)


def masked(error: GraphQLError) -> GraphQLError:
    """The error as a client may see it: an expected one unchanged; anything else reduced to
    ``MASKED_MESSAGE`` at the same position and path, without the original exception."""
    if is_expected(error):
        return error
    return GraphQLError(
        MASKED_MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
    )


def coded_refusal(error: GraphQLError) -> GraphQLError:
    """An input value the schema refuses before anything runs (a literal that is no
    ``DateTime``, say) comes from graphql-core without a location or a code: give it the code
    ``BAD_USER_INPUT`` so clients can tell it from a bug. Any other error is unchanged."""
    coded = (error.extensions or {}).get("code")
    if error.path is not None or coded or error.locations or error.message == MASKED_MESSAGE:
        return error
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        original_error=error.original_error,
        extensions={**(error.extensions or {}), "code": "BAD_USER_INPUT"},
    )


class SpecSelectionSets(SchemaExtension):
    """Parses selection sets by the released spec's grammar, ``{ Selection+ }``.

    graphql-core 3.3 accepts an empty ``{ }`` by default (a draft grammar); strawberry's depth
    limiter cannot measure one (``max()`` of nothing) and crashes inside validation. Refused
    here, such a document is a plain syntax error instead.
    """

    def on_operation(self) -> Iterator[None]:
        parse_options = self.execution_context.parse_options
        parse_options["allow_empty_selection_sets"] = False  # type: ignore[typeddict-unknown-key]
        yield


class UnitOfWork(SchemaExtension):
    """Commits the request's session once when the operation succeeds, rolls back otherwise."""

    async def on_operation(self) -> AsyncIterator[None]:
        yield
        context = self.execution_context.context
        finish = getattr(context, "finish", None)
        if finish is None:
            return
        result = self.execution_context.result
        succeeded = not (result is not None and getattr(result, "errors", None))
        await finish(succeeded=succeeded)


VALUE_MOVING_MUTATIONS = frozenset(
    {
        "transfer",
        "enroll",
        "unenroll",
        "createOnrampPayment",
        "fundSponsorship",
        "registerUtility",
        "upsertProgram",
    }
)
"""Mutation fields whose effect the request's rollback cannot undo: each one commits before
it answers, moves value (tokens, sponsorship funds, a card payment at Stripe), or writes the
chain (the registry). Two of them in one operation could leave one made and the other
refused, or a client secret handed out for a payment the rest of the document undid. The
others (``quoteTransfer``, ``quoteOnramp``, ``addDevice``) only write rows the rollback undoes."""

TOO_MANY_VALUE_MUTATIONS = "TOO_MANY_VALUE_MUTATIONS"


class OneValueMovingMutation(ValidationRule):
    """Refuses, before anything runs, a mutation operation that selects more than one field of
    ``VALUE_MOVING_MUTATIONS``, counted by response key (``a: transfer … b: transfer …`` is
    two; the same key twice is one field, run once), through inline fragments and fragment
    spreads. Counted whatever ``@skip``/``@include`` say: a client sends such fields apart."""

    def enter_operation_definition(
        self, node: OperationDefinitionNode, *_args: object
    ) -> VisitorAction:
        if node.operation != OperationType.MUTATION:
            return SKIP
        moving: dict[str, FieldNode] = {}
        for field in self._root_fields(node.selection_set, seen=set()):
            if field.name.value in VALUE_MOVING_MUTATIONS:
                moving.setdefault((field.alias or field.name).value, field)
        if len(moving) > 1:
            fields = ", ".join(
                key if key == field.name.value else f"{key}: {field.name.value}"
                for key, field in moving.items()
            )
            self.report_error(
                GraphQLError(
                    "one request may carry at most one mutation that moves value or writes the "
                    f"chain ({', '.join(sorted(VALUE_MOVING_MUTATIONS))}); this one has "
                    f"{len(moving)} ({fields}): send them as separate requests",
                    nodes=list(moving.values()),
                    extensions={"code": TOO_MANY_VALUE_MUTATIONS},
                )
            )
        return SKIP

    def _root_fields(
        self, selection_set: SelectionSetNode, *, seen: set[str]
    ) -> Iterator[FieldNode]:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._root_fields(selection.selection_set, seen=seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)  # a cycle is NoFragmentCyclesRule's to report
                fragment = self.context.get_fragment(selection.name.value)
                if fragment is not None:
                    yield from self._root_fields(fragment.selection_set, seen=seen)
