"""Schema-wide behaviour: one unit of work per operation, and error masking with logging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from core.errors import DomainError

logger = logging.getLogger("api.graphql")

MASKED_MESSAGE = "Unexpected error. It has been logged; quote the request id to support."


def is_expected(error: GraphQLError) -> bool:
    """Parse/validation errors and domain errors reach clients as they are; anything else is a
    bug or an outage and is masked."""
    original = error.original_error
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
