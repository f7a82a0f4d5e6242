"""GraphQL subscriptions over graphql-transport-ws, one context per operation.

strawberry builds one context per WebSocket connection and hands it to every operation sent
on it. Here each ``subscribe`` message runs with a context of its own
(``RequestContext.for_operation``): the access token is checked again (so its ``exp`` is), and
operations never share a database session, an account or loaders. Only subscriptions run on
the socket: a query or mutation is refused before anything runs (apps send those over HTTP,
where a document's mutations run one after another in one unit of work). When the caller's
token expires (``exp`` plus the allowed clock skew), the socket is closed with 4401; the app
signs in again and reconnects. A message longer than ``OVPP_GRAPHQL_MAX_BODY_BYTES`` (the
limit of a ``POST /graphql`` body) closes the socket with 1009 before it is parsed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import suppress
from json import JSONDecodeError

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.utils.aio import aclosing

from api.context import RequestContext
from core.errors import DomainError
from identity.principal import Principal

EXPIRED_CLOSE_CODE = 4401
EXPIRED_CLOSE_REASON = "the access token expired: sign in again and reconnect"
ONLY_SUBSCRIPTIONS = (
    "only subscriptions run over the WebSocket: send queries and mutations as HTTP POST /graphql"
)
LONGEST_SLEEP_SECONDS = 3600.0  # an expiry timer wakes at least this often (exp may be huge)
TOO_BIG_CLOSE_CODE = 1009  # RFC 6455: a message too big to process


class SizedWebSocketAdapter(ASGIWebSocketAdapter):
    """strawberry's ASGI WebSocket adapter, but a text message over the GraphQL body limit
    closes the socket with ``TOO_BIG_CLOSE_CODE`` before it is decoded."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        limit = self.ws.app.state.services.settings.graphql_max_body_bytes
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                if len(text) > limit or len(text.encode()) > limit:
                    reason = f"message over {limit} bytes: send at most that much at once"
                    await self.ws.close(code=TOO_BIG_CLOSE_CODE, reason=reason)
                    return
                try:
                    yield self.view.decode_json(text)
                except JSONDecodeError as error:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from error
        except KeyError as error:  # a binary message
            raise NonTextMessageReceived from error
        except WebSocketDisconnect:
            pass


class WalletTransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """strawberry's graphql-transport-ws handler with per-operation contexts, subscriptions
    only, and the socket closed with ``EXPIRED_CLOSE_CODE`` once the token expires."""

    _expiry_watch: asyncio.Task[None] | None = None

    async def run_operation(self, operation: Operation[RequestContext, None]) -> None:
        """As strawberry's, but with the operation's own context, and refusing what is not a
        subscription with an ``error`` message before anything runs."""
        refusal = self._refusal(operation)
        if refusal is not None:
            await operation.send_initial_errors([refusal])
            return
        context = self.context.for_operation(on_principal=self._watch_expiry)
        try:
            result_source = await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise
        finally:
            # A cancelled operation (``complete`` from the client, the socket closing) skips
            # the unit of work's end: its session, if it opened one, is rolled back and closed.
            await asyncio.shield(context.finish(succeeded=False))

    def _refusal(self, operation: Operation[RequestContext, None]) -> GraphQLError | None:
        """The error for a query or mutation; None for a subscription, and for a document that
        does not parse or names no operation, which strawberry answers as the protocol says."""
        max_tokens = self.context.services.settings.graphql_max_tokens
        try:
            document = parse(operation.query, max_tokens=max_tokens)
        except GraphQLError:
            return None
        found = get_operation_ast(document, operation.operation_name)
        if found is None or found.operation == OperationType.SUBSCRIPTION:
            return None
        refused = DomainError(ONLY_SUBSCRIPTIONS)
        return GraphQLError(refused.message, original_error=refused, extensions=refused.extensions)

    def _watch_expiry(self, principal: Principal) -> None:
        """Close the socket when the caller's token expires (armed by the first operation whose
        token passed; every operation of a connection carries the same token)."""
        if self._expiry_watch is not None:
            return
        validator = self.context.services.token_validator
        usable_until = validator.usable_until(principal)
        if usable_until is None:
            return
        self._expiry_watch = asyncio.get_running_loop().create_task(self._close_at(usable_until))

    async def _close_at(self, usable_until: int | float) -> None:
        while True:
            now = time.time()
            if usable_until <= now:  # exact for any JSON number: no float() of a huge int
                break
            if usable_until > now + LONGEST_SLEEP_SECONDS:
                await asyncio.sleep(LONGEST_SLEEP_SECONDS)
            else:
                await asyncio.sleep(float(usable_until - now))
        with suppress(RuntimeError):  # the socket closed meanwhile
            await self.websocket.close(code=EXPIRED_CLOSE_CODE, reason=EXPIRED_CLOSE_REASON)

    async def shutdown(self) -> None:
        watch, self._expiry_watch = self._expiry_watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
            with suppress(asyncio.CancelledError):
                await watch
        await super().shutdown()
