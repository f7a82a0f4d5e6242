"""Schema-wide behaviour: one unit of work per operation, and error masking with logging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

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
